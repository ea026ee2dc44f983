"""Trace context through OpenTelemetry's propagator API: OTEL_PROPAGATORS and W3C baggage."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import baggage, propagate
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagators.b3 import B3MultiFormat, B3SingleFormat
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, format_trace_id
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from choreokit.events import Middleware
from choreokit.tracing import TraceContextRelay, TracingMiddleware
from choreokit.tracing._propagation import (
    GETTER,
    SETTER,
    KafkaHeaderGetter,
    uses_default_propagators,
)
from tests.unit.test_tracing import Hop

B3_TRACE = "80f198ee56343ba864fe8b2a57d3eff7"
B3_SPAN = "e457b5a2e4d86bd1"
B3 = f"{B3_TRACE}-{B3_SPAN}-1"
BAGGAGE = b"tenant=acme,plan=gold"


@pytest.fixture
def b3_and_baggage() -> Iterator[None]:
    """The global propagator as OTEL_PROPAGATORS=b3,baggage makes it."""
    before = propagate.get_global_textmap()
    propagate.set_global_textmap(CompositePropagator([B3SingleFormat(), W3CBaggagePropagator()]))
    yield
    propagate.set_global_textmap(before)


def traced(*, direct: bool = True) -> tuple[TracingMiddleware, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return TracingMiddleware(provider, direct_w3c=direct), exporter


def test_the_default_propagators_are_recognised_by_their_fields_and_others_are_not() -> None:
    assert uses_default_propagators()
    before = propagate.get_global_textmap()
    try:
        propagate.set_global_textmap(
            CompositePropagator([TraceContextTextMapPropagator(), B3MultiFormat()])
        )
        assert not uses_default_propagators()
    finally:
        propagate.set_global_textmap(before)


def test_the_kafka_header_getter_and_setter_speak_record_headers() -> None:
    headers: list[tuple[str, bytes]] = [("b3", b"old")]
    SETTER.set(headers, "b3", "new")
    SETTER.set(headers, "baggage", "k=v")
    assert headers == [("b3", b"new"), ("baggage", b"k=v")]
    carrier = [("x", b"\xff"), ("x", b"ok"), ("y", None)]
    assert GETTER.get(carrier, "x") == ["ok"]
    assert GETTER.get(carrier, "y") is None
    assert KafkaHeaderGetter().keys(carrier) == ["x", "x", "y"]


@pytest.mark.usefixtures("b3_and_baggage")
async def test_a_traced_hop_continues_a_b3_trace_and_passes_baggage_on() -> None:
    middleware, exporter = traced()
    seen: dict[str, str] = {}

    class Peek(Middleware):
        async def on_attempt(self, delivery, call_next):  # type: ignore[no-untyped-def]
            seen.update({k: str(v) for k, v in baggage.get_all().items()})
            await call_next(delivery)

    hop = Hop([middleware, Peek()])
    await hop.handle_headers([("b3", B3.encode()), ("baggage", BAGGAGE)])
    process = next(s for s in exporter.get_finished_spans() if s.kind is SpanKind.CONSUMER)
    assert process.context is not None
    assert process.parent is not None
    assert format_trace_id(process.context.trace_id) == B3_TRACE
    assert f"{process.parent.span_id:016x}" == B3_SPAN
    assert seen == {"tenant": "acme", "plan": "gold"}  # current while the handler runs
    sent = hop.producer.to("inventory")[0]
    send = next(s for s in exporter.get_finished_spans() if s.kind is SpanKind.PRODUCER)
    assert send.context is not None
    assert sent.header("b3") == f"{B3_TRACE}-{send.context.span_id:016x}-1"
    assert sent.header("baggage") == BAGGAGE.decode()
    assert sent.header("traceparent") is None  # only what OTEL_PROPAGATORS names is written


@pytest.mark.usefixtures("b3_and_baggage")
async def test_the_relay_passes_a_b3_trace_and_baggage_on_through_the_propagators() -> None:
    hop = Hop([TraceContextRelay()])
    await hop.handle_headers([("b3", B3.encode()), ("baggage", BAGGAGE)])
    sent = hop.producer.to("inventory")[0]
    assert sent.header("b3") == B3
    assert sent.header("baggage") == BAGGAGE.decode()


@pytest.mark.parametrize("direct", [True, False], ids=["direct-w3c", "propagator-api"])
async def test_with_the_default_propagators_both_paths_write_the_same_w3c_headers(
    direct: bool,
) -> None:
    middleware, _ = traced(direct=direct)
    hop = Hop([middleware])
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    await hop.handle_headers(
        [("traceparent", parent.encode()), ("tracestate", b"v=2"), ("baggage", BAGGAGE)]
    )
    sent = hop.producer.to("inventory")[0]
    traceparent = sent.header("traceparent")
    assert traceparent is not None
    assert traceparent.startswith("00-0af7651916cd43dd8448eb211c80319c-")
    assert traceparent.endswith("-01")
    assert sent.header("tracestate") == "v=2"
    assert sent.header("baggage") == BAGGAGE.decode()


async def test_the_relay_passes_w3c_baggage_on_with_the_default_propagators() -> None:
    hop = Hop([TraceContextRelay()])
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    await hop.handle_headers([("traceparent", parent.encode()), ("baggage", BAGGAGE)])
    sent = hop.producer.to("inventory")[0]
    assert sent.header("traceparent") == parent
    assert sent.header("baggage") == BAGGAGE.decode()
