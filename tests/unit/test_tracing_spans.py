"""FlowSpan and SpanFactory behave like the SDK's spans and tracer where it matters."""

from __future__ import annotations

import random
from collections.abc import Mapping

import pytest
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    DEFAULT_OFF,
    DEFAULT_ON,
    Decision,
    ParentBased,
    ParentBasedTraceIdRatio,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)

from choreokit.tracing import _naming as names
from choreokit.tracing._encoding import SpanEncoder
from choreokit.tracing._spans import FlowSpan, SharedAttributes, SpanFactory, _decider
from tests.unit.test_tracing import Hop, traced

pytestmark = pytest.mark.unit

STATE = TraceState([("vendor", "v1")])


def _parents() -> list[SpanContext | None]:
    parents: list[SpanContext | None] = [None]
    parents.extend(
        SpanContext(0xABC, 0xDEF, remote, TraceFlags(flags), STATE)
        for remote in (True, False)
        for flags in (TraceFlags.SAMPLED, TraceFlags.DEFAULT)
    )
    return parents


@pytest.mark.parametrize(
    "sampler",
    [
        ALWAYS_ON,
        ALWAYS_OFF,
        DEFAULT_ON,
        DEFAULT_OFF,
        TraceIdRatioBased(0.3),
        ParentBasedTraceIdRatio(0.3),
    ],
    ids=lambda s: s.get_description(),
)
def test_standard_samplers_decide_as_the_sdk_does(sampler: Sampler) -> None:
    decide = _decider(sampler)
    assert decide is not None
    rng = random.Random(7)
    for parent in _parents():
        context = (
            Context()
            if parent is None
            else trace.set_span_in_context(NonRecordingSpan(parent), Context())
        )
        for _ in range(300):
            trace_id = parent.trace_id if parent is not None else rng.getrandbits(128)
            decision = sampler.should_sample(context, trace_id, "x").decision
            flags = None if parent is None else parent.trace_flags
            assert decide(flags, trace_id) == (decision is Decision.RECORD_AND_SAMPLE)


class TaggingSampler(Sampler):
    """A sampler the factory does not know: it samples and adds an attribute and trace state."""

    def should_sample(self, *args: object, **kwargs: object) -> SamplingResult:
        return SamplingResult(Decision.RECORD_AND_SAMPLE, {"sampled.by": "tagging"}, STATE)

    def get_description(self) -> str:
        return "tagging"


def _factory(
    sampler: Sampler = ALWAYS_ON,
) -> tuple[SpanFactory, InMemorySpanExporter, TracerProvider]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=sampler)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("t")
    assert isinstance(tracer, trace.Tracer)
    scope = InstrumentationScope("choreokit", None, names.SCHEMA_URL)
    return SpanFactory(tracer, scope), exporter, provider  # type: ignore[arg-type]


def test_any_other_sampler_is_asked_and_its_attributes_and_state_are_kept() -> None:
    assert _decider(ParentBased(TaggingSampler())) is None
    factory, exporter, _ = _factory(TaggingSampler())
    factory.start("send t", SpanKind.PRODUCER, None, None).end()
    (span,) = exporter.get_finished_spans()
    assert span.attributes == {"sampled.by": "tagging"}
    assert span.context is not None
    assert span.context.trace_state == STATE


def test_a_sampled_out_span_records_nothing_but_carries_the_trace_on() -> None:
    factory, exporter, _ = _factory(DEFAULT_ON)
    parent = SpanContext(0xABC, 0xDEF, True, TraceFlags(TraceFlags.DEFAULT), STATE)
    span = factory.start("process t", SpanKind.CONSUMER, parent, None)
    assert not span.is_recording()
    assert span.get_span_context().trace_id == 0xABC
    assert span.get_span_context().trace_state == STATE
    span.end()
    assert exporter.get_finished_spans() == ()


def test_a_child_keeps_the_parents_trace_and_a_root_starts_one() -> None:
    factory, exporter, _ = _factory()
    parent = SpanContext(0xABC, 0xDEF, True, TraceFlags(TraceFlags.SAMPLED), STATE)
    factory.start("process t", SpanKind.CONSUMER, parent, None).end()
    factory.start("send t", SpanKind.PRODUCER, None, None).end()
    child, root = exporter.get_finished_spans()
    assert child.context is not None
    assert root.context is not None
    assert child.context.trace_id == 0xABC
    assert child.parent == parent
    assert child.context.trace_state == STATE
    assert root.parent is None
    assert root.context.trace_id not in {0, 0xABC}


def _flow_span(
    shared: Mapping[str, str | int] | None = None,
) -> tuple[FlowSpan, InMemorySpanExporter]:
    factory, exporter, _ = _factory()
    span = factory.start(
        "send t",
        SpanKind.PRODUCER,
        None,
        None,
        SharedAttributes(shared) if shared is not None else None,
    )
    assert isinstance(span, FlowSpan)
    return span, exporter


def test_values_set_from_outside_are_checked_as_the_sdk_checks_them() -> None:
    span, exporter = _flow_span()
    _, sdk_exporter, provider = _factory()
    sdk_span = provider.get_tracer("t").start_span("send t")
    for target in (span, sdk_span):
        target.set_attribute("ok", 1)
        target.set_attribute("odd", object())  # type: ignore[arg-type]
        target.set_attributes({"list": ["a", "b"], "": "empty key", "map": {"k": [1, 2]}})
        target.end()
    (finished,) = exporter.get_finished_spans()
    (expected,) = sdk_exporter.get_finished_spans()
    assert dict(finished.attributes or {}) == dict(expected.attributes or {})
    assert "" not in (finished.attributes or {})


def test_overriding_a_shared_attribute_keeps_one_value_and_leaves_the_shared_ones_alone() -> None:
    shared = {"messaging.system": "kafka", "messaging.destination.name": "t"}
    span, exporter = _flow_span(shared)
    other, _ = _flow_span(shared)
    span.set_attribute("messaging.destination.name", "renamed")
    span.end()
    (finished,) = exporter.get_finished_spans()
    assert finished.attributes == {
        "messaging.system": "kafka",
        "messaging.destination.name": "renamed",
    }
    assert other.attributes == shared
    encoded = ExportTraceServiceRequest.FromString(SpanEncoder().encode_request([finished]))
    assert encoded == encode_spans([finished])
    assert len(encoded.resource_spans[0].scope_spans[0].spans[0].attributes) == len(shared)


def test_the_attribute_and_event_limits_apply_and_count_what_was_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "3")
    monkeypatch.setenv("OTEL_SPAN_EVENT_COUNT_LIMIT", "2")
    span, exporter = _flow_span({"a": "1", "b": "2"})
    span.set_attribute("c", 3)
    span.set_attribute("d", 4)
    for number in range(4):
        span.add_event(f"e{number}")
    span.end()
    (finished,) = exporter.get_finished_spans()
    assert dict(finished.attributes or {}) == {"a": "1", "b": "2", "c": 3}
    assert finished.dropped_attributes == 1
    assert [e.name for e in finished.events] == ["e0", "e1"]
    assert finished.dropped_events == len(range(4)) - 2
    decoded = ExportTraceServiceRequest.FromString(SpanEncoder().encode_request([finished]))
    assert decoded == encode_spans([finished])


def test_status_ok_is_final_and_unset_changes_nothing() -> None:
    span, _ = _flow_span()
    span.set_status(StatusCode.ERROR, "first")
    span.set_status(Status(StatusCode.UNSET))
    assert span.status.status_code is StatusCode.ERROR
    span.set_status(StatusCode.OK)
    span.set_status(StatusCode.ERROR)
    assert span.status.status_code.name == "OK"


def test_an_exception_is_recorded_by_its_type_only() -> None:
    span, exporter = _flow_span()
    span.record_exception(ValueError("card 4111 1111 1111 1111 declined"))
    span.end()
    (finished,) = exporter.get_finished_spans()
    (event,) = finished.events
    assert event.name == "exception"
    assert dict(event.attributes or {}) == {"exception.type": "ValueError"}


def test_a_span_ends_once_and_then_takes_nothing() -> None:
    span, exporter = _flow_span()
    span.end()
    span.end()
    span.set_attribute("late", 1)
    span.add_event("late")
    span.update_name("late")
    assert not span.is_recording()
    (finished,) = exporter.get_finished_spans()
    assert finished.name == "send t"
    assert not finished.attributes
    assert not finished.events


def test_links_added_later_are_kept_and_encoded_as_the_sdk_encodes_them() -> None:
    span, exporter = _flow_span({"messaging.system": "kafka"})
    linked = SpanContext(0x1234, 0x5678, True, TraceFlags(TraceFlags.SAMPLED), STATE)
    span.add_link(linked, {"link.reason": "batch"})
    span.add_link(trace.INVALID_SPAN_CONTEXT)  # ignored, as the SDK does
    span.end()
    (finished,) = exporter.get_finished_spans()
    assert [link.context for link in finished.links] == [linked]
    decoded = ExportTraceServiceRequest.FromString(SpanEncoder().encode_request([finished]))
    assert decoded == encode_spans([finished])


def test_a_flow_span_works_as_a_context_manager() -> None:
    span, exporter = _flow_span()
    with span:
        span.set_attribute("inside", True)
    (finished,) = exporter.get_finished_spans()
    assert finished.attributes == {"inside": True}


async def test_spans_of_a_handled_record_encode_as_the_sdk_encodes_them() -> None:
    middleware, exporter = traced()
    failing = Hop([middleware], fail=1)  # one failed try: an exception event on the process span
    await failing.handle()
    spans: list[ReadableSpan] = list(exporter.get_finished_spans())
    assert {type(s) for s in spans} == {FlowSpan}
    assert any(s.events for s in spans)
    decoded = ExportTraceServiceRequest.FromString(SpanEncoder().encode_request(spans))
    assert decoded == encode_spans(spans)
