"""choreokit: event-driven choreography for Python teams on Kafka.

The event layer's public names are here, so a service needs one import::

    from choreokit import Event, HandlerContext, Service

    class OrderPlaced(Event, type="order.placed", version=1, topic="orders"):
        order_id: str

    inventory = Service("inventory")

Subpackages, from the bottom layer up (each imports only those before it):
``choreokit.events`` (the event layer: events, envelope, registry, upcasting,
service, retries, dead letters, inbox/outbox, orchestration, saga specs),
``choreokit.tracing`` (OpenTelemetry), ``choreokit.services.runtime`` (settings,
HTTP kit, database, embedded broker, supervisor), the apps
``choreokit.services.saga_observer`` and ``choreokit.services.gateway``, and the
command line ``choreokit.services.cli``.
"""

from choreokit.events import (
    BrokerUnavailableError,
    ChoreoError,
    ConfigurationError,
    ConsumerStats,
    DecodedRecord,
    DecodeError,
    Delivery,
    EmbeddedBrokerError,
    Envelope,
    Event,
    EventInfo,
    HandlerContext,
    HandlerSpec,
    Idempotence,
    InvalidEnvelopeError,
    InvalidPayloadError,
    KafkaSettings,
    MalformedJsonError,
    Middleware,
    MissingUpcasterError,
    Outbound,
    PermanentError,
    Profile,
    Publisher,
    PublishError,
    RecordInfo,
    Registry,
    RetryPolicy,
    SchemaError,
    Service,
    UnknownEventTypeError,
    UnknownEventVersionError,
    UnknownTypePolicy,
    UnsupportedContentTypeError,
    VersionTooNewError,
    dead_letter_topic,
    decode,
    default_registry,
    encode_headers,
    encode_payload,
    is_dead_letter_topic,
    new_event_id,
    to_structured,
    upcaster,
)

__all__ = [
    "BrokerUnavailableError",
    "ChoreoError",
    "ConfigurationError",
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
    "Publisher",
    "RecordInfo",
    "Registry",
    "RetryPolicy",
    "SchemaError",
    "Service",
    "UnknownEventTypeError",
    "UnknownEventVersionError",
    "UnknownTypePolicy",
    "UnsupportedContentTypeError",
    "VersionTooNewError",
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
