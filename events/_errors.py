"""The error hierarchy of choreokit.

Every error raised by the toolkit derives from :class:`ChoreoError`. Each type
says, through its ``retriable`` flag, whether trying the same thing again may
succeed; the consumer uses the flag to choose between a retry and the
dead-letter topic. Messages say what happened and what to do next.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from typing import ClassVar

from aiokafka import errors as kafka_errors


class ChoreoError(Exception):
    """Root of every error choreokit raises."""

    retriable: ClassVar[bool] = False
    """Whether repeating the failed operation unchanged may succeed."""


class ConfigurationError(ChoreoError):
    """A setting, declaration or command-line argument is invalid."""


class UnknownSettingError(ConfigurationError, ValueError):
    """Variables of a settings class's prefix name none of its settings (a typo, most often).

    Catchable as :class:`ValueError` too, as pydantic's validation errors are.
    """

    def __init__(self, prefix: str, unknown: Sequence[str], known: Iterable[str]) -> None:
        self.prefix = prefix
        """The prefix the variables share, e.g. ``CHOREO_OBSERVER_``."""
        self.unknown = tuple(unknown)
        """The variables that name no setting."""
        self.known = tuple(sorted(known))
        """Every variable of the prefix that something reads."""
        hints = []
        for name in self.unknown:
            close = difflib.get_close_matches(name.upper(), self.known, n=1)
            hints.append(f"{name} (did you mean {close[0]}?)" if close else name)
        plural = "s" if len(hints) > 1 else ""
        super().__init__(
            f"unknown variable{plural} {', '.join(hints)}: correct or unset it; the "
            f"{prefix}* variables are {', '.join(self.known)}"
        )


class SchemaError(ChoreoError):
    """An event declaration or the registry is inconsistent."""


class UnknownEventTypeError(SchemaError):
    """No model is registered for an event type."""

    def __init__(self, event_type: str, known: Sequence[str] = ()) -> None:
        self.event_type = event_type
        self.known = tuple(sorted(known))
        hint = f" (known: {', '.join(self.known)})" if self.known else ""
        super().__init__(
            f"no event type {event_type!r} is registered{hint}; "
            "import the module that declares it or list it under the 'choreokit.events' "
            "entry point"
        )


class UnknownEventVersionError(SchemaError):
    """The type is known but not at this major version."""

    def __init__(self, event_type: str, version: int, known: Sequence[int]) -> None:
        self.event_type = event_type
        self.version = version
        self.known = tuple(sorted(known))
        super().__init__(
            f"no schema for {event_type} v{version} "
            f"(known: {', '.join(str(v) for v in self.known)}); "
            "deploy a build that declares it, or export it with 'choreo schemas export'"
        )


class VersionTooNewError(SchemaError):
    """A record's version is newer than the version its handler understands."""

    def __init__(self, event_type: str, version: int, handler_version: int) -> None:
        self.event_type = event_type
        self.version = version
        self.handler_version = handler_version
        super().__init__(
            f"{event_type} v{version} is newer than the handler's v{handler_version}; "
            "upgrade the consuming service, then replay the record from the dead-letter topic"
        )


class MissingUpcasterError(SchemaError):
    """No upcaster connects two consecutive versions of a type."""

    def __init__(self, event_type: str, from_version: int, to_version: int) -> None:
        self.event_type = event_type
        self.from_version = from_version
        self.to_version = to_version
        super().__init__(
            f"no upcaster from {event_type} v{from_version} to v{to_version}; "
            "declare one with @events.upcaster"
        )


class InboxReplayError(ConfigurationError):
    """An inbox cannot rebuild an event a handling published: its registry lacks the type.

    A redelivery sends the recorded events again, rebuilt from the inbox's
    registry. Raised when a handling would record an event that registry does
    not know (its transaction is rolled back), and on the redelivery of one
    recorded before. Either way the record goes to the dead-letter topic and
    nothing is sent in its place; replay it from there once the inbox knows the
    type.
    """

    def __init__(
        self, consumer: str, event_id: str, event_type: str, version: int | None = None
    ) -> None:
        self.consumer = consumer
        self.event_id = event_id
        self.event_type = event_type
        self.version = version
        """The recorded event's version its registry lacks (``None``: it lacks the type)."""
        missing = f"{event_type} v{version}" if version is not None else f"type {event_type!r}"
        super().__init__(
            f"the inbox of {consumer!r} cannot rebuild, to send again on a redelivery, what "
            f"handling event {event_id!r} published: its registry does not know {missing}. Leave "
            "Inbox(registry=...) out so that it takes the service's registry, or give it the "
            "service's (registry=service.registry), or import the module that declares the "
            "type; then replay the record from the dead-letter topic"
        )


class OutboxRelayError(ConfigurationError):
    """An outbox relay cannot rebuild a staged event: its registry lacks the type or version.

    Rows are sent in the order they were staged, so the relay sends nothing after
    that row until it can: it says so on every round instead of skipping the row.
    """

    def __init__(
        self, producer: str, row: int, event_type: str, version: int | None = None
    ) -> None:
        self.producer = producer
        self.row = row
        self.event_type = event_type
        self.version = version
        """The staged event's version the registry lacks (``None``: it lacks the type)."""
        missing = f"{event_type} v{version}" if version is not None else f"type {event_type!r}"
        super().__init__(
            f"the outbox relay of {producer!r} cannot rebuild row {row}: its registry does not "
            f"know {missing}, and rows after it wait (they are sent in order). Give the relay "
            "the registry the event is declared in (OutboxRelay(..., registry=service.registry)) "
            "or import the module that declares the type"
        )


class DecodeError(ChoreoError):
    """A Kafka record is not a valid event; it goes to the dead-letter topic."""


class InvalidEnvelopeError(DecodeError):
    """A CloudEvents attribute is missing or malformed."""

    def __init__(self, attribute: str, reason: str) -> None:
        self.attribute = attribute
        self.reason = reason
        super().__init__(f"CloudEvents attribute {attribute!r} {reason}")


class UnsupportedContentTypeError(DecodeError):
    """The record's content type is neither JSON nor structured CloudEvents JSON."""

    def __init__(self, content_type: str) -> None:
        self.content_type = content_type
        super().__init__(
            f"content type {content_type!r} is not supported; use application/json "
            "(binary mode) or application/cloudevents+json (structured mode)"
        )


class InvalidPayloadError(DecodeError):
    """The payload is not JSON, or does not validate against its model."""

    def __init__(self, event_type: str, version: int, detail: str) -> None:
        self.event_type = event_type
        self.version = version
        self.detail = detail
        super().__init__(f"payload of {event_type} v{version} is invalid: {detail}")


class MalformedJsonError(InvalidPayloadError):
    """The payload is not JSON at all."""


class PermanentError(ChoreoError):
    """Raised by a handler to send the event to the dead-letter topic without retrying."""


class KeyConflictError(PermanentError):
    """An event names a business key (an order id) that belongs to another flow.

    The key was bound to the flow that created it; an event of any other flow
    that names it is refused, never applied, and goes to the dead-letter topic
    under this error type, so the attempt is visible where dead letters are.
    """

    def __init__(self, kind: str, key: str, correlation_id: str, owner: str) -> None:
        self.kind = kind
        self.key = key
        self.correlation_id = correlation_id
        self.owner = owner
        super().__init__(
            f"{kind} {key[:64]!r} belongs to another flow than {correlation_id[:128]!r}; "
            "the event was refused and nothing was applied. A genuine event must be "
            f"published in the flow that created the {kind}"
        )


class PublishError(ChoreoError):
    """The broker did not acknowledge a record."""

    retriable = True


class PublishRejectedError(PublishError):
    """The broker refused a record for good (too large, no such topic, not authorised).

    Sending it again unchanged fails the same way, so the consumer dead-letters
    the record that caused the send at once instead of retrying it.
    """

    retriable = False


_REFUSED_FOR_GOOD = (
    kafka_errors.MessageSizeTooLargeError,
    kafka_errors.RecordListTooLargeError,
    kafka_errors.InvalidTopicError,
    kafka_errors.TopicAuthorizationFailedError,
    kafka_errors.ClusterAuthorizationFailedError,
    kafka_errors.UnsupportedForMessageFormatError,
    kafka_errors.CorruptRecordException,
)
"""Broker answers to a send that the same record can never overcome. (aiokafka's own
``retriable`` flag is False for timeouts and lost connections too, so it cannot decide.)"""


def refused_for_good(cause: BaseException) -> bool:
    """Whether a send failed in a way that sending the same record again cannot change."""
    return isinstance(cause, (*_REFUSED_FOR_GOOD, PublishRejectedError))


def publish_error(message: str, cause: BaseException) -> PublishError:
    """Return the error of a failed send: :class:`PublishRejectedError` if it can never pass."""
    if refused_for_good(cause):
        return PublishRejectedError(message)
    return PublishError(message)


class BrokerUnavailableError(ChoreoError):
    """The Kafka cluster cannot be reached."""

    retriable = True


class TransactionsUnavailableError(ConfigurationError):
    """``CHOREO_KAFKA_TRANSACTIONS=on``, and the broker cannot run Kafka transactions."""


class ServiceFailedError(ChoreoError):
    """A service cannot go on and its process must end (to be restarted).

    Raised by :meth:`ServiceApp.run <choreokit.services.runtime.app.ServiceApp.run>` when a
    service reports it: a transactional producer fenced by another instance of the same
    transactional id, or a transaction that outlasted the broker's timeout. An instance that
    stayed up would keep its partitions in the group without handling them.
    """


class EmbeddedBrokerError(ChoreoError):
    """The embedded broker could not be started."""
