"""The public face of each package is deliberate: these names, no more, no less."""

from __future__ import annotations
import __future__

import types

import pytest

import choreokit
import choreokit.events.orchestration
import choreokit.events.sql
import choreokit.services.gateway
import choreokit.services.runtime
import choreokit.services.saga_observer
import choreokit.tracing
from choreokit import events

PACKAGES = [
    choreokit,
    events,
    events.wire,
    choreokit.events.sql,
    choreokit.events.orchestration,
    choreokit.tracing,
    choreokit.services.runtime,
    choreokit.services.saga_observer,
    choreokit.services.gateway,
]


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.__name__)
def test_all_names_exactly_the_public_members(package: types.ModuleType) -> None:
    """A name imported into a package's ``__init__`` but left out of ``__all__`` is caught."""
    exported = sorted(package.__all__, key=str.casefold)
    public = sorted(
        (
            name
            for name, member in vars(package).items()
            if not name.startswith("_")
            # Imported modules (and subpackages, once imported) are not exports unless listed.
            and not (isinstance(member, types.ModuleType) and name not in package.__all__)
            and not isinstance(member, __future__._Feature)
        ),
        key=str.casefold,
    )
    assert exported == public


def test_events_exports() -> None:
    assert sorted(events.__all__) == sorted(
        [
            "MAX_ATTRIBUTE_LENGTH",
            "MAX_TIME",
            "MIN_TIME",
            "ASYNCAPI_FILE",
            "attribute_problem",
            "is_dataversion",
            "parse_event_time",
            "SAGAS_GROUP",
            "EventRef",
            "SagaSpec",
            "SagaStep",
            "Checkpoint",
            "Fallback",
            "APPROVALS_TOPIC",
            "APPROVAL_EVENTS",
            "ApprovalRequested",
            "ApprovalGranted",
            "ApprovalRejected",
            "ApprovalEscalated",
            "sagas_from_entry_points",
            "sagas_from_yaml",
            "SagaProblem",
            "ContractUsers",
            "asyncapi_document",
            "contract_users",
            "check_saga",
            "saga_diagram",
            "Duration",
            "Headers",
            "SchemaProblem",
            "SendFuture",
            "broker_unavailable",
            "check_asyncapi",
            "check_schemas",
            "client_options",
            "consumer_options",
            "describe_validation_error",
            "ensure_topics",
            "export_asyncapi",
            "export_schemas",
            "freeze_startup_heap",
            "thaw_heap",
            "header_value",
            "millis",
            "parse_duration",
            "reader_options",
            "record_time",
            "wire",
            "LOG_SAFE_KEY",
            "REDACTED",
            "SENSITIVE_KEY",
            "LogSafe",
            "Sensitive",
            "error_text",
            "has_sensitive",
            "log_safe_fields",
            "redact",
            "sensitive_fields",
            "settings_variables",
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
            "EventTime",
            "HandlerContext",
            "HandlerSpec",
            "Idempotence",
            "Isolation",
            "InvalidEnvelopeError",
            "InvalidPayloadError",
            "KafkaSettings",
            "KeyConflictError",
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
            "SaslMechanism",
            "SchemaError",
            "SecurityProtocol",
            "Service",
            "StrictSettings",
            "TransactionsUnavailableError",
            "UnknownEventTypeError",
            "UnknownEventVersionError",
            "UnknownSettingError",
            "UnknownTypePolicy",
            "UnsupportedContentTypeError",
            "VersionTooNewError",
            "check_attribute",
            "check_time",
            "dead_letter_topic",
            "decode",
            "default_registry",
            "encode_headers",
            "encode_payload",
            "is_dead_letter_topic",
            "needs_extra",
            "new_event_id",
            "parse_time",
            "to_structured",
            "upcaster",
        ]
    )


def test_every_exported_name_exists_and_is_documented() -> None:
    for package in PACKAGES:
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
