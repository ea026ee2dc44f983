"""The recorded hop's cheaper paths give exactly what the general paths give (issue 15)."""

from __future__ import annotations

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanContext, SpanKind, TraceFlags, TraceState
from opentelemetry.util.types import AttributeValue

from choreokit.tracing._encoding import SpanEncoder
from choreokit.tracing._spans import FlowSpan, SharedAttributes
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
