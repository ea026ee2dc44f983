"""Span names and attribute keys: the one place they are spelled, from the semantic conventions.

Every name comes from the ``opentelemetry-semantic-conventions`` package
(messaging, CloudEvents and error attributes; the messaging ones are still
"incubating" there), so a rename upstream shows up here and in the test that
pins this module, not scattered through the middleware.

The record key and the payload are deliberately absent: payloads may carry personal
data, and so may the key, which is the flow's correlation id (an e-mail address or a
customer number makes a natural one). ``messaging.kafka.message.key`` is never set,
and ``messaging.message.conversation_id`` holds :func:`flow_label` of the correlation
id, not the id itself: the same flow has the same label in every process.
"""

from __future__ import annotations

import hashlib
from typing import Final

from opentelemetry.semconv._incubating.attributes.cloudevents_attributes import (
    CLOUDEVENTS_EVENT_ID,
    CLOUDEVENTS_EVENT_SOURCE,
    CLOUDEVENTS_EVENT_SPEC_VERSION,
    CLOUDEVENTS_EVENT_TYPE,
)
from opentelemetry.semconv._incubating.attributes.messaging_attributes import (
    MESSAGING_CONSUMER_GROUP_NAME,
    MESSAGING_DESTINATION_NAME,
    MESSAGING_DESTINATION_PARTITION_ID,
    MESSAGING_KAFKA_OFFSET,
    MESSAGING_MESSAGE_CONVERSATION_ID,
    MESSAGING_MESSAGE_ID,
    MESSAGING_OPERATION_NAME,
    MESSAGING_OPERATION_TYPE,
    MESSAGING_SYSTEM,
    MessagingOperationTypeValues,
    MessagingSystemValues,
)
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.attributes.exception_attributes import EXCEPTION_TYPE
from opentelemetry.semconv.schemas import Schemas

from choreokit.events import Envelope, Outbound, RecordInfo

INSTRUMENTATION_NAME: Final = "choreokit"
"""The instrumentation scope of every span choreokit makes."""

SCHEMA_URL: Final = Schemas.V1_44_0.value
"""The semantic-conventions version the names below follow."""

KAFKA: Final = MessagingSystemValues.KAFKA.value
SEND: Final = MessagingOperationTypeValues.SEND.value
PROCESS: Final = MessagingOperationTypeValues.PROCESS.value
SPEC_VERSION: Final = "1.0"
"""The only CloudEvents version the codec accepts."""

EXCEPTION_EVENT: Final = "exception"
"""Span event added for each failed try of a handler (type only, never the message)."""

__all__ = [
    "CLOUDEVENTS_EVENT_ID",
    "CLOUDEVENTS_EVENT_SOURCE",
    "CLOUDEVENTS_EVENT_SPEC_VERSION",
    "CLOUDEVENTS_EVENT_TYPE",
    "ERROR_TYPE",
    "EXCEPTION_EVENT",
    "EXCEPTION_TYPE",
    "INSTRUMENTATION_NAME",
    "KAFKA",
    "MESSAGING_CONSUMER_GROUP_NAME",
    "MESSAGING_DESTINATION_NAME",
    "MESSAGING_DESTINATION_PARTITION_ID",
    "MESSAGING_KAFKA_OFFSET",
    "MESSAGING_MESSAGE_CONVERSATION_ID",
    "MESSAGING_MESSAGE_ID",
    "MESSAGING_OPERATION_NAME",
    "MESSAGING_OPERATION_TYPE",
    "MESSAGING_SYSTEM",
    "PROCESS",
    "SCHEMA_URL",
    "SEND",
    "acknowledged_attributes",
    "consumer_attributes",
    "consumer_fixed_attributes",
    "error_type",
    "process_span_name",
    "producer_attributes",
    "producer_fixed_attributes",
    "send_span_name",
]


def send_span_name(topic: str) -> str:
    """``send <topic>``: the PRODUCER span of one publish."""
    return f"{SEND} {topic}"


def process_span_name(topic: str) -> str:
    """``process <topic>``: the CONSUMER span of one handled record."""
    return f"{PROCESS} {topic}"


FLOW_LABEL_PREFIX: Final = "flow-"
_FLOW_LABEL_LENGTH: Final = len(FLOW_LABEL_PREFIX) + 32


def flow_label(correlation_id: str) -> str:
    """What spans and log lines call a flow: ``flow-`` and 32 hex digits of its id's digest.

    The correlation id itself (the record key) may be personal data; the label is the same
    for the same id everywhere, so one flow's spans and lines are still found together
    (the observer links to a flow's traces by it). A label is its own label.
    """
    if correlation_id.startswith(FLOW_LABEL_PREFIX) and len(correlation_id) == _FLOW_LABEL_LENGTH:
        return correlation_id
    digest = hashlib.blake2b(correlation_id.encode("utf-8", "surrogatepass"), digest_size=16)
    return FLOW_LABEL_PREFIX + digest.hexdigest()


def _cloudevents(envelope: Envelope) -> dict[str, str | int]:
    return {
        MESSAGING_MESSAGE_ID: envelope.id,
        MESSAGING_MESSAGE_CONVERSATION_ID: flow_label(envelope.correlation_id),
        CLOUDEVENTS_EVENT_ID: envelope.id,
        CLOUDEVENTS_EVENT_SOURCE: envelope.source,
        CLOUDEVENTS_EVENT_TYPE: envelope.type,
    }


def producer_fixed_attributes(topic: str) -> dict[str, str | int]:
    """Attributes every ``send`` span to ``topic`` shares."""
    return {
        MESSAGING_SYSTEM: KAFKA,
        MESSAGING_OPERATION_NAME: SEND,
        MESSAGING_OPERATION_TYPE: SEND,
        MESSAGING_DESTINATION_NAME: topic,
        CLOUDEVENTS_EVENT_SPEC_VERSION: SPEC_VERSION,
    }


def producer_attributes(outbound: Outbound) -> dict[str, str | int]:
    """Attributes of one ``send`` span known before the broker answers, beyond the shared ones.

    The partition and offset are added on acknowledgement (see
    :func:`acknowledged_attributes`).
    """
    return _cloudevents(outbound.envelope)


def acknowledged_attributes(partition: int, offset: int) -> dict[str, str | int]:
    """Where the broker put a sent record."""
    return {MESSAGING_DESTINATION_PARTITION_ID: str(partition), MESSAGING_KAFKA_OFFSET: offset}


def consumer_fixed_attributes(topic: str, group: str) -> dict[str, str | int]:
    """Attributes every ``process`` span of ``group`` on ``topic`` shares."""
    return {
        MESSAGING_SYSTEM: KAFKA,
        MESSAGING_OPERATION_NAME: PROCESS,
        MESSAGING_OPERATION_TYPE: PROCESS,
        MESSAGING_DESTINATION_NAME: topic,
        MESSAGING_CONSUMER_GROUP_NAME: group,
        CLOUDEVENTS_EVENT_SPEC_VERSION: SPEC_VERSION,
    }


def consumer_attributes(record: RecordInfo, envelope: Envelope) -> dict[str, str | int]:
    """Attributes of one ``process`` span beyond the shared ones."""
    attributes = _cloudevents(envelope)
    attributes[MESSAGING_DESTINATION_PARTITION_ID] = str(record.partition)
    attributes[MESSAGING_KAFKA_OFFSET] = record.offset
    return attributes


def error_type(error: BaseException) -> str:
    """``error.type`` of a failure: the exception's class, named as its package exports it.

    Built-in exceptions keep their bare name (``TimeoutError``); private module
    segments are left out (``choreokit.events.PublishError``, not
    ``choreokit.events._errors.PublishError``).
    """
    kind = type(error)
    if kind.__module__ == "builtins":
        return kind.__qualname__
    public = [part for part in kind.__module__.split(".") if not part.startswith("_")]
    return ".".join([*public, kind.__qualname__])
