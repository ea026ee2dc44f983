"""The recorded hop's cheaper paths give exactly what the general paths give (issue 15)."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanContext, SpanKind, TraceFlags, TraceState
from opentelemetry.util.types import AttributeValue

from choreokit.tracing import flow_label
from choreokit.tracing._encoding import SpanEncoder
from choreokit.tracing._naming import MESSAGING_MESSAGE_CONVERSATION_ID
from choreokit.tracing._spans import FlowSpan, SharedAttributes
from tests.support import event_record
from tests.unit.test_tracing import Hop, Placed, traced
from tests.unit.test_tracing_spans import _factory

pytestmark = pytest.mark.unit

STATE = TraceState([("vendor", "v1"), ("other", "x-2")])
PARENTS = {
    "root": None,
    "remote": SpanContext(0xABC << 64 | 0x1, 0xDEF, True, TraceFlags(TraceFlags.SAMPLED), STATE),
    "local": SpanContext(0xFFFF << 100, 0x1 << 63, False, TraceFlags(TraceFlags.SAMPLED)),
}
RECORDED: dict[str, str | int] = {  # what the middleware records (no checks)
    "messaging.message.id": "eeb7113c86ce4b13be531d3120088985",
    "cloudevents.event_source": "/services/" + "x" * 130,  # one pair longer than 127 bytes
    "unicode": "grüße ✓",
    "empty": "",
    "messaging.kafka.offset": 1234567890123,
    "zero": 0,
    "negative": -5,
    "k" * 140: 7,  # a key too long for the one-byte length
}
SET: dict[str, AttributeValue] = {"flag": True, "ratio": 2.5, "ids": [1, 2]}  # checked values


def _plain_flow_spans() -> list[ReadableSpan]:
    factory, exporter, _ = _factory()
    shared = SharedAttributes({"messaging.system": "kafka", "messaging.destination.name": "t"})
    for parent in PARENTS.values():
        for kind, common in ((SpanKind.CONSUMER, shared), (SpanKind.PRODUCER, None)):
            span = factory.start(f"{kind.name} t", kind, parent, None, common)
            assert type(span) is FlowSpan
            span.record(RECORDED)
            span.set_attributes(SET)
            span.end()
    spans = list(exporter.get_finished_spans())
    assert all(type(s) is FlowSpan and s.plain for s in spans)  # the in-line path is taken
    return spans


def test_plain_flow_spans_encode_in_line_as_the_sdk_encodes_them() -> None:
    spans = _plain_flow_spans()
    expected = encode_spans(spans)
    encoder = SpanEncoder()
    for _ in range(2):  # the second time with the shared attributes already encoded
        assert ExportTraceServiceRequest.FromString(encoder.encode_request(spans)) == expected


async def test_a_hops_spans_take_the_digest_of_its_correlation_id_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    digested: list[bytes] = []
    blake2b = hashlib.blake2b

    def counting(data: bytes, *, digest_size: int) -> Any:
        digested.append(data)
        return blake2b(data, digest_size=digest_size)

    monkeypatch.setattr(hashlib, "blake2b", counting)
    middleware, exporter = traced()
    hop = Hop([middleware])
    correlation_id = f"customer-{uuid.uuid4()}@example.com"
    record = event_record(Placed(note="n"), offset=3, partition=1, correlation_id=correlation_id)
    await hop.processor.process([record], hop.consumer)
    await hop.processor.settle()

    spans = exporter.get_finished_spans()
    assert {s.kind for s in spans} == {SpanKind.CONSUMER, SpanKind.PRODUCER}
    expected = "flow-" + blake2b(correlation_id.encode(), digest_size=16).hexdigest()
    assert {(s.attributes or {})[MESSAGING_MESSAGE_CONVERSATION_ID] for s in spans} == {expected}
    assert digested == [correlation_id.encode()]  # once for the hop's two spans
    assert flow_label("another id") != expected  # a different flow gets its own label
    assert flow_label(correlation_id) == expected
