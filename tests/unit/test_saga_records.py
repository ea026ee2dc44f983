"""Every record the observer reads gets one answer: event, lifecycle, dead letter or reject."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from aiokafka import ConsumerRecord

from choreokit.events import to_structured
from choreokit.services.example.contracts.orders import OrderConfirmed
from choreokit.services.saga_observer.events import LIFECYCLE_TYPES, SagaStalled
from choreokit.services.saga_observer.records import (
    SeenDeadLetter,
    SeenEvent,
    SeenLifecycle,
    SeenReject,
    classify,
    from_micros,
    micros,
    service_of,
    trace_id,
)
from tests.support import envelope_for, event_record, record


def seen(r: ConsumerRecord[bytes, bytes], limit: int = 16_384) -> object:
    return classify(r, lifecycle_types=LIFECYCLE_TYPES, payload_limit=limit)


def test_a_binary_mode_event_is_an_event() -> None:
    r = event_record(OrderConfirmed(order_id="o", tracking_number="T"), correlation_id="flow-1")
    found = seen(r)
    assert isinstance(found, SeenEvent)
    assert found.envelope.correlation_id == "flow-1"
    assert json.loads(found.payload or "") == {"order_id": "o", "tracking_number": "T"}


def test_a_structured_mode_event_is_an_event_too() -> None:
    event = OrderConfirmed(order_id="o", tracking_number="T")
    envelope = envelope_for(event, correlation_id="flow-2")
    doc = to_structured(envelope, event.model_dump())
    r = record(
        "orders",
        value=json.dumps(doc).encode(),
        headers=[("content-type", b"application/cloudevents+json")],
    )
    found = seen(r)
    assert isinstance(found, SeenEvent)
    assert found.envelope.id == envelope.id
    assert json.loads(found.payload or "")["tracking_number"] == "T"


def test_an_oversized_payload_is_kept_out_but_measured() -> None:
    r = event_record(OrderConfirmed(order_id="o" * 64, tracking_number="T" * 64))
    found = seen(r, limit=50)
    assert isinstance(found, SeenEvent)
    assert found.payload is None
    assert found.size > 100


def test_the_observers_own_events_are_lifecycle_records() -> None:
    stalled = SagaStalled(
        saga="order",
        started_at=datetime(2026, 1, 1, tzinfo=UTC),
        deadline=datetime(2026, 1, 1, tzinfo=UTC),
        last_type="stock.reserved",
        expected=(),
    )
    assert isinstance(seen(event_record(stalled, correlation_id="flow-3")), SeenLifecycle)


@pytest.mark.parametrize(
    ("headers", "value", "error"),
    [
        ([], b"{}", "InvalidEnvelopeError"),
        (
            [("ce_specversion", b"1.0"), ("ce_id", b"x"), ("ce_source", b"/s")],
            b"{}",
            "InvalidEnvelopeError",
        ),
        ([("content-type", b"text/plain")], b"hi", "UnsupportedContentTypeError"),
        ([("content-type", b"application/cloudevents+json")], b"{oops", "MalformedJsonError"),
        ([("ce_specversion", b"\xff")], b"{}", "InvalidEnvelopeError"),
    ],
)
def test_a_record_that_is_no_event_is_a_reject_saying_why(
    headers: list[tuple[str, bytes]], value: bytes, error: str
) -> None:
    found = seen(record("orders", value=value, headers=headers, key=b"k" * 500))
    assert isinstance(found, SeenReject)
    assert found.error_type == error
    assert found.error_message
    assert found.key is not None
    assert len(found.key) == 256


def test_a_dead_letter_is_attached_to_its_flow_when_the_headers_allow() -> None:
    original = event_record(
        OrderConfirmed(order_id="o", tracking_number="T"), correlation_id="flow-4"
    )
    letter = record(
        "orders.dlq",
        value=original.value,
        headers=[
            *original.headers,
            ("choreo_dlq_error_type", b"VersionTooNewError"),
            ("choreo_dlq_original_topic", b"orders"),
            ("choreo_dlq_original_partition", b"2"),
            ("choreo_dlq_original_offset", b"41"),
            ("choreo_dlq_consumer_group", b"shipping"),
            ("choreo_dlq_failed_at", b"2026-11-21T12:00:00+00:00"),
        ],
        offset=7,
    )
    found = seen(letter)
    assert isinstance(found, SeenDeadLetter)
    assert found.correlation_id == "flow-4"
    assert found.event_type == "order.confirmed"
    assert found.key == "orders/2/41/shipping"
    assert found.failed_at == datetime(2026, 11, 21, 12, tzinfo=UTC)


def test_a_dead_letter_without_usable_headers_is_kept_unattached() -> None:
    found = seen(record("payments.dlq", value=b"\x00junk", headers=[], offset=3))
    assert isinstance(found, SeenDeadLetter)
    assert found.correlation_id is None
    assert found.error_type == "unknown"
    assert found.key == "payments.dlq/0/3"


def test_helpers_read_sources_traces_and_times() -> None:
    assert service_of("/services/orders") == "orders"
    assert service_of("urn:legacy-billing") == "urn:legacy-billing"
    tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert trace_id(tp) == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert trace_id("00-" + "0" * 32 + "-00f067aa0ba902b7-01") is None
    assert trace_id("garbage") is None
    moment = datetime(2026, 11, 21, 12, 0, 0, 123456, tzinfo=UTC)
    assert from_micros(micros(moment)) == moment
