"""The event layer: versioned CloudEvents on Kafka, handled and published by services.

Declare one model per (type, major version), connect versions with upcasters,
and let a :class:`Service` handle and publish them::

    from choreokit.events import Event, HandlerContext, Service, upcaster

    class OrderPlaced(Event, type="order.placed", version=1, topic="orders"):
        order_id: str

    inventory = Service("inventory")

    @inventory.handler(OrderPlaced)
    async def reserve(event: OrderPlaced, ctx: HandlerContext) -> None:
        await ctx.publish(StockReserved(order_id=event.order_id))

The wire contract (CloudEvents 1.0, Kafka binary content mode) is described in
``docs/events.md``.
"""

from choreokit.events._codec import (
    DecodedRecord,
    decode,
    encode_headers,
    encode_payload,
    to_structured,
)
from choreokit.events._consumer import ConsumerStats, UnknownTypePolicy
from choreokit.events._consumer_metrics import ConsumerMetrics
from choreokit.events._dead_letter import dead_letter_topic, is_dead_letter_topic
from choreokit.events._envelope import Envelope
from choreokit.events._errors import (
    BrokerUnavailableError,
    ChoreoError,
    ConfigurationError,
    DecodeError,
    EmbeddedBrokerError,
    InvalidEnvelopeError,
    InvalidPayloadError,
    MalformedJsonError,
    MissingUpcasterError,
    PermanentError,
    PublishError,
    PublishRejectedError,
    SchemaError,
    UnknownEventTypeError,
    UnknownEventVersionError,
    UnsupportedContentTypeError,
    VersionTooNewError,
)
from choreokit.events._handling import Delivery, HandlerContext, HandlerSpec, RecordInfo
from choreokit.events._ids import new_event_id
from choreokit.events._kafka import client_options
from choreokit.events._middleware import Middleware
from choreokit.events._model import Event, EventInfo
from choreokit.events._outbound import Outbound
from choreokit.events._publisher import Publisher
from choreokit.events._registry import Registry, default_registry, upcaster
from choreokit.events._retry import RetryPolicy
from choreokit.events._service import Service
from choreokit.events._settings import (
    Idempotence,
    KafkaSettings,
    Profile,
    SaslMechanism,
    SecurityProtocol,
)

__all__ = [
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
