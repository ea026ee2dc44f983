"""Property-based tests: every declared event model (the example's and the observer's own)
round-trips through the wire format, and the decoder answers anything with the toolkit's
own errors only (a decode or a validation error), never a crash."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from choreokit.events import (
    DecodeError,
    Envelope,
    Event,
    decode,
    default_registry,
    encode_headers,
    encode_payload,
    to_structured,
)
from choreokit.events._contract import schema_document
from choreokit.services.runtime.discovery import load_event_modules
from tests.fuzz.schema_strategies import from_schema, json_values

load_event_modules()
MODELS = sorted(default_registry, key=lambda m: str(m.event_info()))
NOW = datetime(2026, 1, 1, tzinfo=UTC)
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PER_MODEL = settings(FUZZ, max_examples=20)

EXPECTED_TYPES = {
    "order.placed",
    "order.confirmed",
    "order.cancelled",
    "stock.reserved",
    "stock.rejected",
    "stock.released",
    "payment.authorized",
    "payment.declined",
    "payment.refunded",
    "shipment.completed",
    "shipment.failed",
    "saga.completed",
    "saga.failed",
    "saga.compensated",
    "saga.stalled",
    "saga.rejected",
}


def test_every_example_and_observer_model_is_covered() -> None:
    assert {m.event_info().type for m in MODELS} >= EXPECTED_TYPES


def envelope(model: type[Event], **overrides: Any) -> Envelope:
    info = model.event_info()
    values: dict[str, Any] = {
        "id": "e-1",
        "source": "/services/test",
        "type": info.type,
        "dataversion": info.version,
        "time": NOW,
        "correlation_id": "flow-1",
    }
    return Envelope(**(values | overrides))


@pytest.mark.parametrize("model", MODELS, ids=lambda m: str(m.event_info()))
@PER_MODEL
@given(data=st.data())
def test_every_model_round_trips_through_both_content_modes(
    model: type[Event], data: st.DataObject
) -> None:
    document = data.draw(from_schema(schema_document(model)))
    try:
        event = model.model_validate(document)
    except ValueError:
        return  # a cross-field rule the schema cannot say (an order's total): refused, fine
    value = encode_payload(event)
    binary = decode(encode_headers(envelope(model)), value, fallback_time=NOW)
    assert binary.event(model) == event
    structured = to_structured(envelope(model), event.model_dump(mode="json"))
    doc = json.dumps(structured).encode()
    again = decode([("content-type", b"application/cloudevents+json")], doc, fallback_time=NOW)
    assert again.event(model) == event
    assert again.envelope == binary.envelope


@FUZZ
@given(model=st.sampled_from(MODELS), payload=json_values())
def test_any_json_payload_is_an_event_or_a_validation_error(
    model: type[Event], payload: Any
) -> None:
    decoded = decode(
        encode_headers(envelope(model)), json.dumps(payload).encode(), fallback_time=NOW
    )
    with contextlib.suppress(DecodeError):
        decoded.event(model)


HEADER_NAMES = st.sampled_from(
    [
        "content-type",
        "ce_specversion",
        "ce_id",
        "ce_source",
        "ce_type",
        "ce_dataversion",
        "ce_time",
        "ce_correlationid",
        "ce_causationid",
        "traceparent",
        "tracestate",
        "other",
    ]
)
HEADER_VALUES = (
    st.none()
    | st.binary(max_size=64)
    | st.sampled_from(
        [
            b"1.0",
            b"application/json",
            b"application/cloudevents+json",
            b"9999-12-31T23:59:59+00:00",
            b"0001-01-01T00:00:00-23:59",
            b"2026-01-01T00:00:00Z",
            "/s/\u202e".encode(),
            b"\xed\xa0\x80",
            b"99999999999",
        ]
    )
)


@FUZZ
@given(
    headers=st.lists(st.tuples(HEADER_NAMES | st.text(max_size=8), HEADER_VALUES), max_size=12),
    value=st.none() | st.binary(max_size=256) | json_values().map(lambda v: repr(v).encode()),
)
def test_arbitrary_records_decode_or_raise_a_decode_error(
    headers: list[tuple[str, bytes | None]], value: bytes | None
) -> None:
    try:
        decoded = decode(headers, value, fallback_time=NOW)
    except DecodeError:
        return
    assert 1970 <= decoded.envelope.time.astimezone(UTC).year < 2200


@FUZZ
@given(
    doc=json_values(),
    attributes=st.dictionaries(
        st.sampled_from(
            ["specversion", "id", "source", "type", "time", "dataversion", "correlationid", "data"]
        ),
        json_values(),
        max_size=8,
    ),
)
def test_arbitrary_structured_documents_decode_or_raise_a_decode_error(
    doc: Any, attributes: dict[str, Any]
) -> None:
    body = attributes | {"specversion": "1.0"} if isinstance(doc, dict) else doc
    try:
        raw = json.dumps(body).encode()
    except (TypeError, ValueError):
        return
    with contextlib.suppress(DecodeError):
        decode([("content-type", b"application/cloudevents+json")], raw, fallback_time=NOW)
