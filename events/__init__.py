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

from choreokit.events import wire
from choreokit.events._approvals import (
    APPROVAL_EVENTS,
    APPROVALS_TOPIC,
    ApprovalEscalated,
    ApprovalGranted,
    ApprovalRejected,
    ApprovalRequested,
)
from choreokit.events._asyncapi import (
    ASYNCAPI_FILE,
    asyncapi_document,
    check_asyncapi,
    export_asyncapi,
)
from choreokit.events._attributes import (
    MAX_ATTRIBUTE_LENGTH,
    MAX_TIME,
    MIN_TIME,
    attribute_problem,
    check_attribute,
    check_time,
    is_dataversion,
    parse_event_time,
    parse_time,
)
from choreokit.events._codec import (
    DecodedRecord,
    Headers,
    decode,
    describe_validation_error,
    encode_headers,
    encode_payload,
    header_value,
    record_time,
    to_structured,
)
from choreokit.events._consumer import ConsumerStats, UnknownTypePolicy
from choreokit.events._context import HandlerContext
from choreokit.events._contract import SchemaProblem, check_schemas, export_schemas
from choreokit.events._contract_users import ContractUsers, contract_users
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
    KeyConflictError,
    MalformedJsonError,
    MissingUpcasterError,
    PermanentError,
    PublishError,
    PublishRejectedError,
    SchemaError,
    TransactionsUnavailableError,
    UnknownEventTypeError,
    UnknownEventVersionError,
    UnknownSettingError,
    UnsupportedContentTypeError,
    VersionTooNewError,
)
from choreokit.events._handling import Delivery, HandlerSpec, RecordInfo
from choreokit.events._heap import freeze_startup_heap, thaw_heap
from choreokit.events._ids import new_event_id
from choreokit.events._kafka import (
    broker_unavailable,
    client_options,
    consumer_options,
    ensure_topics,
    reader_options,
)
from choreokit.events._middleware import Middleware
from choreokit.events._model import Event, EventInfo, EventTime
from choreokit.events._outbound import Outbound, SendFuture
from choreokit.events._publisher import Publisher
from choreokit.events._registry import Registry, default_registry, upcaster
from choreokit.events._retry import RetryPolicy
from choreokit.events._saga import (
    SAGAS_GROUP,
    Checkpoint,
    EventRef,
    Fallback,
    SagaSpec,
    SagaStep,
    sagas_from_entry_points,
    sagas_from_yaml,
)
from choreokit.events._saga_check import SagaProblem, check_saga, saga_diagram
from choreokit.events._sensitive import (
    LOG_SAFE_KEY,
    REDACTED,
    SENSITIVE_KEY,
    LogSafe,
    Sensitive,
    error_text,
    has_sensitive,
    log_safe_fields,
    redact,
    sensitive_fields,
)
from choreokit.events._service import Service
from choreokit.events._settings import (
    Duration,
    Idempotence,
    Isolation,
    KafkaSettings,
    Profile,
    SaslMechanism,
    SecurityProtocol,
    StrictSettings,
    millis,
    parse_duration,
    settings_variables,
)
from choreokit.events.extras import MissingExtraError, needs_extra

__all__ = [
    "APPROVALS_TOPIC",
    "APPROVAL_EVENTS",
    "ASYNCAPI_FILE",
    "LOG_SAFE_KEY",
    "MAX_ATTRIBUTE_LENGTH",
    "MAX_TIME",
    "MIN_TIME",
    "REDACTED",
    "SAGAS_GROUP",
    "SENSITIVE_KEY",
    "ApprovalEscalated",
    "ApprovalGranted",
    "ApprovalRejected",
    "ApprovalRequested",
    "BrokerUnavailableError",
    "Checkpoint",
    "ChoreoError",
    "ConfigurationError",
    "ConsumerStats",
    "ContractUsers",
    "DecodeError",
    "DecodedRecord",
    "Delivery",
    "Duration",
    "EmbeddedBrokerError",
    "Envelope",
    "Event",
    "EventInfo",
    "EventRef",
    "EventTime",
    "Fallback",
    "HandlerContext",
    "HandlerSpec",
    "Headers",
    "Idempotence",
    "InvalidEnvelopeError",
    "InvalidPayloadError",
    "Isolation",
    "KafkaSettings",
    "KeyConflictError",
    "LogSafe",
    "MalformedJsonError",
    "Middleware",
    "MissingExtraError",
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
    "SagaProblem",
    "SagaSpec",
    "SagaStep",
    "SaslMechanism",
    "SchemaError",
    "SchemaProblem",
    "SecurityProtocol",
    "SendFuture",
    "Sensitive",
    "Service",
    "StrictSettings",
    "TransactionsUnavailableError",
    "UnknownEventTypeError",
    "UnknownEventVersionError",
    "UnknownSettingError",
    "UnknownTypePolicy",
    "UnsupportedContentTypeError",
    "VersionTooNewError",
    "asyncapi_document",
    "attribute_problem",
    "broker_unavailable",
    "check_asyncapi",
    "check_attribute",
    "check_saga",
    "check_schemas",
    "check_time",
    "client_options",
    "consumer_options",
    "contract_users",
    "dead_letter_topic",
    "decode",
    "default_registry",
    "describe_validation_error",
    "encode_headers",
    "encode_payload",
    "ensure_topics",
    "error_text",
    "export_asyncapi",
    "export_schemas",
    "freeze_startup_heap",
    "has_sensitive",
    "header_value",
    "is_dataversion",
    "is_dead_letter_topic",
    "log_safe_fields",
    "millis",
    "needs_extra",
    "new_event_id",
    "parse_duration",
    "parse_event_time",
    "parse_time",
    "reader_options",
    "record_time",
    "redact",
    "saga_diagram",
    "sagas_from_entry_points",
    "sagas_from_yaml",
    "sensitive_fields",
    "settings_variables",
    "thaw_heap",
    "to_structured",
    "upcaster",
    "wire",
]
