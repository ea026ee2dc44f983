"""Fields marked sensitive: the mark in the JSON Schema, redaction, error texts without inputs."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Annotated

import pytest
from aiokafka import ConsumerRecord
from pydantic import BaseModel, Field, ValidationError, field_validator

from choreokit import LogSafe, Sensitive, redact
from choreokit.events import (
    REDACTED,
    Envelope,
    Event,
    Registry,
    describe_validation_error,
    encode_headers,
    error_text,
    has_sensitive,
    log_safe_fields,
    sensitive_fields,
)
from choreokit.services.example.contracts.orders import OrderPlaced
from choreokit.services.saga_observer.records import SeenEvent, classify
from choreokit.tracing import TraceContextFilter, flow_label

EMAIL = "canary.unit@example.com"
registry = Registry()


class Card(BaseModel):
    number: Annotated[str, Sensitive] = Field(max_length=19)
    brand: str = "visa"


class Signup(Event, type="test.signup", version=1, topic="signups", registry=registry):
    user: Annotated[str, LogSafe] = Field(max_length=20)
    email: Annotated[str | None, Sensitive] = Field(default=None, max_length=40)
    cards: tuple[Card, ...] = ()
    note: str = Field(default="", max_length=40)

    @field_validator("note")
    @classmethod
    def _no_at(cls, value: str) -> str:
        if "@" in value:
            raise ValueError(f"{value} must not hold an address")
        return value


def test_the_marks_are_in_the_json_schema() -> None:
    schema = Signup.model_json_schema()
    assert schema["properties"]["email"]["x-sensitive"] is True
    assert schema["properties"]["user"]["x-log-safe"] is True
    assert "x-sensitive" not in schema["properties"]["note"]
    assert schema["$defs"]["Card"]["properties"]["number"]["x-sensitive"] is True
    assert sensitive_fields(Signup) == {"email"}
    assert log_safe_fields(Signup) == {"user"}
    assert has_sensitive(Signup)


def test_the_example_marks_the_customers_email_and_postal_code() -> None:
    schema = OrderPlaced.model_json_schema()
    assert schema["properties"]["email"]["x-sensitive"] is True
    assert schema["$defs"]["Address"]["properties"]["postal_code"]["x-sensitive"] is True


def test_redact_replaces_sensitive_values_in_nested_models_and_keeps_the_rest() -> None:
    data = {
        "user": "ann",
        "email": EMAIL,
        "cards": [{"number": "4111111111111111", "brand": "visa"}],
        "unknown": 1,
    }
    redacted = redact(Signup, data)
    assert redacted == {
        "user": "ann",
        "email": REDACTED,
        "cards": [{"number": REDACTED, "brand": "visa"}],
        "unknown": 1,
    }
    assert data["email"] == EMAIL  # a copy
    assert redact(Signup, {"user": "ann", "email": None})["email"] is None
    assert redact(Signup, [EMAIL]) == [EMAIL]  # not the object the model reads: as it is


def test_error_texts_repeat_no_input() -> None:
    with pytest.raises(ValidationError) as caught:
        Signup.model_validate({"user": "u", "email": EMAIL * 3, "note": EMAIL})
    errors = caught.value.errors()
    texts = [error_text(e, Signup) for e in errors]
    assert all(EMAIL not in t for t in texts), texts
    assert any("sensitive" in t for t in texts)
    assert EMAIL not in describe_validation_error(caught.value, model=Signup)
    assert EMAIL not in describe_validation_error(caught.value)


def test_the_observer_stores_a_known_type_redacted_and_an_unknown_one_as_it_is() -> None:
    def record(event_type: str, version: int) -> ConsumerRecord[bytes, bytes]:
        envelope = Envelope(
            id="e-1",
            source="/test",
            type=event_type,
            dataversion=version,
            time=datetime(2026, 1, 1, tzinfo=UTC),
            correlation_id=EMAIL,
        )
        payload = {"user": "ann", "email": EMAIL, "cards": [{"number": "4111111111111111"}]}
        return ConsumerRecord(
            topic="signups",
            partition=0,
            offset=1,
            timestamp=1_700_000_000_000,
            timestamp_type=0,
            key=EMAIL.encode(),
            value=json.dumps(payload).encode(),
            checksum=None,
            serialized_key_size=1,
            serialized_value_size=1,
            headers=encode_headers(envelope),
        )

    known = classify(
        record("test.signup", 1),
        lifecycle_types=frozenset(),
        payload_limit=10_000,
        registry=registry,
    )
    assert isinstance(known, SeenEvent)
    assert known.payload is not None
    assert EMAIL not in known.payload
    assert "4111111111111111" not in known.payload
    assert json.loads(known.payload)["user"] == "ann"
    unknown = classify(
        record("test.other", 1),
        lifecycle_types=frozenset(),
        payload_limit=10_000,
        registry=registry,
    )
    assert isinstance(unknown, SeenEvent)
    assert unknown.payload is not None
    assert EMAIL in unknown.payload


def test_spans_and_log_lines_name_a_flow_by_its_label() -> None:
    label = flow_label(EMAIL)
    assert label.startswith("flow-")
    assert EMAIL not in label
    assert flow_label(label) == label
    assert flow_label(EMAIL) == label != flow_label(EMAIL + ".")
    line = logging.makeLogRecord({"msg": "x", "correlation_id": EMAIL})
    TraceContextFilter().filter(line)
    assert getattr(line, "correlation_id", None) == label


def test_exported_http_spans_carry_the_route_not_the_path_or_query() -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from choreokit.tracing._scrub import REDACTED_PATH, ScrubbingProcessor

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(ScrubbingProcessor(SimpleSpanProcessor(exporter)))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span(
        "GET /api/flows/{correlation_id}",
        attributes={
            "url.path": f"/api/flows/{EMAIL}",
            "url.query": f"q={EMAIL}",
            "http.route": "/api/flows/{correlation_id}",
        },
    ):
        pass
    with tracer.start_as_current_span("GET", attributes={"url.path": f"/x/{EMAIL}"}):
        pass
    routed, unrouted = exporter.get_finished_spans()
    assert dict(routed.attributes or {}) == {
        "url.path": "/api/flows/{correlation_id}",
        "http.route": "/api/flows/{correlation_id}",
    }
    assert dict(unrouted.attributes or {}) == {"url.path": REDACTED_PATH}


def test_a_hops_span_is_scrubbed_too_when_a_handler_gives_it_a_url() -> None:
    """FlowSpans skip the merged attribute copy on end, but a URL a handler set is still caught."""
    from opentelemetry.sdk.trace import Tracer as SdkTracer
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope
    from opentelemetry.trace import SpanKind

    from choreokit.tracing._scrub import ScrubbingProcessor
    from choreokit.tracing._spans import FlowSpan, SharedAttributes, SpanFactory

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(ScrubbingProcessor(SimpleSpanProcessor(exporter)))
    tracer = provider.get_tracer("test")
    assert isinstance(tracer, SdkTracer)
    factory = SpanFactory(tracer, InstrumentationScope("choreokit"))
    shared = SharedAttributes({"messaging.system": "kafka"})
    for url in (None, f"https://x.example/?who={EMAIL}"):
        span = factory.start("process t", SpanKind.CONSUMER, None, None, shared)
        assert isinstance(span, FlowSpan)
        if url is not None:
            span.set_attribute("url.full", url)
        span.end()
    plain, handled = exporter.get_finished_spans()
    assert dict(plain.attributes or {}) == {"messaging.system": "kafka"}
    assert dict(handled.attributes or {}) == {"messaging.system": "kafka"}
