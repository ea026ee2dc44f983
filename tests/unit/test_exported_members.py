"""The public face of each package is deliberate: these names, no more, no less."""

from __future__ import annotations

import types

import choreokit.services.runtime
from choreokit import events


def test_events_exports() -> None:
    assert sorted(events.__all__) == sorted(
        [
            "BrokerUnavailableError",
            "ChoreoError",
            "ConfigurationError",
            "ConsumerMetrics",
            "ConsumerStats",
            "DecodeError",
            "DecodedRecord",
            "Delivery",
            "EmbeddedBrokerError",
            "Envelope",
            "Event",
            "EventInfo",
            "HandlerContext",
            "HandlerSpec",
            "Idempotence",
            "InvalidEnvelopeError",
            "InvalidPayloadError",
            "KafkaSettings",
            "MalformedJsonError",
            "Middleware",
            "MissingUpcasterError",
            "Outbound",
            "PermanentError",
            "Profile",
            "PublishError",
            "PublishRejectedError",
            "Publisher",
            "RecordInfo",
            "Registry",
            "RetryPolicy",
            "SaslMechanism",
            "SchemaError",
            "SecurityProtocol",
            "Service",
            "UnknownEventTypeError",
            "UnknownEventVersionError",
            "UnknownTypePolicy",
            "UnsupportedContentTypeError",
            "VersionTooNewError",
            "client_options",
            "dead_letter_topic",
            "decode",
            "default_registry",
            "encode_headers",
            "encode_payload",
            "is_dead_letter_topic",
            "new_event_id",
            "to_structured",
            "upcaster",
        ]
    )


def test_every_exported_name_exists_and_is_documented() -> None:
    for package in (events, choreokit.services.runtime):
        for name in package.__all__:
            member = getattr(package, name)
            if callable(member) and not name.startswith("default"):
                assert member.__doc__, f"{package.__name__}.{name} has no docstring"


def test_errors_share_one_root_and_say_whether_to_retry() -> None:
    errors = [getattr(events, n) for n in events.__all__ if n.endswith("Error")]
    for error in errors:
        assert issubclass(error, events.ChoreoError)
        assert isinstance(error.retriable, bool)
    assert events.PublishError.retriable
    assert not events.InvalidPayloadError.retriable


def test_runtime_exports_every_public_name_it_imports() -> None:
    """A name imported into the runtime but left out of ``__all__`` is caught (httpx's way)."""
    exported = sorted(choreokit.services.runtime.__all__, key=str.casefold)
    public = sorted(
        (
            name
            for name, value in vars(choreokit.services.runtime).items()
            if not name.startswith("_") and not isinstance(value, types.ModuleType)
        ),
        key=str.casefold,
    )
    assert exported == public
    assert issubclass(choreokit.services.runtime.KafkaRigError, events.ChoreoError)
