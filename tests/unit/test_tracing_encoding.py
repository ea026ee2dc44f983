"""The fast OTLP encoder writes exactly what the SDK's encoder writes, for every kind of span."""

from __future__ import annotations

import inspect

import pytest
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.grpc.exporter import OTLPExporterMixin
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)

from choreokit.tracing._encoding import SpanEncoder
from choreokit.tracing._export import GrpcSpanExporter

pytestmark = pytest.mark.unit

REMOTE = SpanContext(
    trace_id=0x0AF7651916CD43DD8448EB211C80319C,
    span_id=0xB7AD6B7169203331,
    is_remote=True,
    trace_flags=TraceFlags(TraceFlags.SAMPLED),
    trace_state=TraceState([("vendor", "opaque"), ("other", "x-1")]),
)


def _spans() -> list[ReadableSpan]:
    exporter = InMemorySpanExporter()
    resources = [
        Resource.create({"service.name": "orders", "deployment.environment": "test"}),
        Resource({"service.name": "billing", "pid": 41, "ratio": 0.5}, schema_url="https://x/1"),
    ]
    for number, resource in enumerate(resources):
        provider = TracerProvider(resource=resource)
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        plain = provider.get_tracer("plain")
        scoped = provider.get_tracer(
            "choreokit",
            "1.2.3",
            schema_url="https://opentelemetry.io/schemas/1.44.0",
            attributes={"scope.kind": "test", "n": number},
        )
        remote = trace.set_span_in_context(NonRecordingSpan(REMOTE), Context())
        consumer = SpanKind.CONSUMER
        with scoped.start_as_current_span("process orders", context=remote, kind=consumer) as span:
            span.set_attributes(
                {
                    "messaging.system": "kafka",
                    "messaging.kafka.offset": 1234567890123,
                    "negative": -5,
                    "zero": 0,
                    "empty": "",
                    "flag": True,
                    "off": False,
                    "ratio": 2.75,
                    "strings": ["a", "", "ü"],
                    "ints": [1, -2, 3],
                    "floats": [0.0, 1.5],
                    "bools": [True, False],
                    "unicode": "grüße ✓",
                    "mapping": {"a": 1, "b": "x", "nested": {"c": [True]}},
                }
            )
            span.add_event("exception", {"exception.type": "ValueError"})
            span.add_event("bare")
            with plain.start_as_current_span(
                "send payments",
                kind=SpanKind.PRODUCER,
                links=[Link(REMOTE, {"link.reason": "batch", "n": 2}), Link(REMOTE)],
            ) as child:
                child.set_status(Status(StatusCode.ERROR, "broker refused"))
        with plain.start_as_current_span("internal") as span:
            span.set_status(Status(StatusCode.OK))
        for kind in (SpanKind.SERVER, SpanKind.CLIENT):
            plain.start_span(f"kind {kind.name}", kind=kind).end()
    return list(exporter.get_finished_spans())


def test_the_fast_encoder_writes_what_the_sdk_encoder_writes() -> None:
    spans = _spans()
    expected = encode_spans(spans)
    encoder = SpanEncoder()
    for _ in range(2):  # the second time from the caches
        actual = ExportTraceServiceRequest.FromString(encoder.encode_request(spans))
        assert actual == expected


def test_spans_one_at_a_time_agree_too() -> None:
    encoder = SpanEncoder()
    for span in _spans():
        decoded = ExportTraceServiceRequest.FromString(encoder.encode_request([span]))
        assert decoded == encode_spans([span])


def test_an_empty_batch_is_an_empty_request() -> None:
    assert SpanEncoder().encode_request([]) == b""


def test_many_distinct_values_do_not_grow_the_cache_without_bound() -> None:
    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("t")
    for number in range(5000):
        with tracer.start_as_current_span("s") as span:
            span.set_attribute("messaging.message.id", f"id-{number}")
    encoder = SpanEncoder()
    spans = exporter.get_finished_spans()
    decoded = ExportTraceServiceRequest.FromString(encoder.encode_request(spans))
    assert decoded == encode_spans(spans)
    assert len(encoder._pairs) <= 4096


def test_the_grpc_exporter_sends_what_the_fast_encoder_writes() -> None:
    spans = _spans()
    exporter = GrpcSpanExporter(endpoint="http://127.0.0.1:4317")
    try:
        assert exporter._translate_data(spans) == encode_spans(spans)
    finally:
        exporter.shutdown()
    # The hook overridden above is the one the SDK's exporter calls for every batch;
    # if a later SDK stops calling it, export still works but loses the fast encoder.
    assert "self._translate_data(" in inspect.getsource(OTLPExporterMixin._export)
