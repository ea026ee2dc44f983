"""The handler hop's fast paths give what the general paths give (issue 15).

Each fast path is checked against the path it short-cuts, on the wire (the
headers sent) and in what a handler sees (current span, log ids), and each
test fails if its fast path is not taken or gives another answer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.structs import RecordMetadata
from opentelemetry import context as otel_context
from opentelemetry import propagate
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import Context
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import (
    CarrierT,
    Getter,
    Setter,
    TextMapPropagator,
    default_getter,
    default_setter,
)
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    DEFAULT_ON,
    ParentBasedTraceIdRatio,
    Sampler,
    SamplingResult,
)
from opentelemetry.trace import SpanContext, get_current_span
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from choreokit.events import (
    Envelope,
    Idempotence,
    KafkaSettings,
    Middleware,
    encode_headers,
    new_event_id,
    record_time,
)
from choreokit.events._attributes import _FORBIDDEN, attribute_problem, check_attribute
from choreokit.events._codec import _checked, _version, header_value, header_values
from choreokit.events._errors import InvalidEnvelopeError
from choreokit.events._handling import Delivery, Next
from choreokit.events._kafka import producer_options
from choreokit.tracing import TraceContextFilter, TraceContextRelay, TracingMiddleware, _relay
from choreokit.tracing._propagation import extract as propagation_extract
from choreokit.tracing._spans import SampledOutSpan
from tests.support import event_record
from tests.unit.test_tracing import Hop, Placed

PARENT = "0af7651916cd43dd8448eb211c80319c"
BAGGAGE = ("baggage", b"tenant=acme")


class CountingIds(IdGenerator):
    """Ids in a known order, so that two runs of a hop give the same ids."""

    def __init__(self) -> None:
        self.next = 0x1000

    def _take(self) -> int:
        self.next += 1
        return self.next

    def generate_span_id(self) -> int:
        return self._take()

    def generate_trace_id(self) -> int:
        return (0xABC << 100) | self._take()

    def is_trace_id_random(self) -> bool:
        return True


class Opaque(Sampler):
    """The same decisions as ``inner``, in a sampler the middleware does not know (the SDK path)."""

    def __init__(self, inner: Sampler) -> None:
        self.inner = inner

    def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
        return self.inner.should_sample(*args, **kwargs)

    def get_description(self) -> str:
        return f"Opaque({self.inner.get_description()})"


class Probe(Middleware):
    """Notes, while the handler runs, the current span and what the log filter reads."""

    def __init__(self) -> None:
        self.spans: list[Any] = []
        self.contexts: list[SpanContext] = []
        self.log_ids: list[tuple[object, object]] = []

    async def on_attempt(self, delivery: Delivery, call_next: Next) -> None:
        span = get_current_span()
        self.spans.append(span)
        self.contexts.append(span.get_span_context())
        record = logging.makeLogRecord({"msg": "handling"})
        TraceContextFilter().filter(record)
        self.log_ids.append((record.__dict__["trace_id"], record.__dict__["span_id"]))
        await call_next(delivery)


def traced_hop(sampler: Sampler) -> tuple[Hop, Probe, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=sampler, id_generator=CountingIds())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    probe = Probe()
    return Hop([TracingMiddleware(provider), probe]), probe, exporter


def wire(hop: Hop) -> list[tuple[str, str | None]]:
    (sent,) = hop.producer.to("inventory")
    return [(name, sent.header(name)) for name in ("traceparent", "tracestate", "baggage")]


CASES = {
    "parent-not-sampled": (
        ParentBasedTraceIdRatio(1.0),
        [("traceparent", f"00-{PARENT}-b7ad6b7169203331-00".encode()), ("tracestate", b"v=2,w=3")],
    ),
    "parent-not-sampled-random-flag": (
        DEFAULT_ON,
        [("traceparent", f"00-{PARENT}-b7ad6b7169203331-02".encode()), BAGGAGE],
    ),
    "root-ratio-no": (ParentBasedTraceIdRatio(0.0), []),
    "always-off": (ALWAYS_OFF, [("traceparent", f"00-{PARENT}-b7ad6b7169203331-01".encode())]),
}


@pytest.mark.parametrize("case", CASES)
async def test_a_sampled_out_hop_sends_what_the_sdk_path_sends_without_making_its_spans(
    case: str,
) -> None:
    sampler, headers = CASES[case]
    fast, fast_probe, fast_spans = traced_hop(sampler)
    sdk, sdk_probe, sdk_spans = traced_hop(Opaque(sampler))
    await fast.handle_headers(list(headers))
    await sdk.handle_headers(list(headers))

    assert wire(fast) == wire(sdk)
    assert wire(fast)[0][1] is not None  # a traceparent is sent: the trace goes on
    (fast_span,) = fast_probe.spans
    assert type(fast_span) is SampledOutSpan  # the fast path ran: no SDK span for the hop
    assert type(sdk_probe.spans[0]) is not SampledOutSpan
    assert fast_probe.contexts == sdk_probe.contexts  # the same ids, flags and trace state
    assert fast_probe.log_ids == sdk_probe.log_ids  # logs name the trace either way
    assert fast_probe.log_ids[0][0] == f"{fast_probe.contexts[0].trace_id:032x}"
    assert fast_spans.get_finished_spans() == sdk_spans.get_finished_spans() == ()


async def test_a_span_a_handler_starts_in_a_sampled_out_hop_is_its_unsampled_child() -> None:
    provider = TracerProvider(sampler=ParentBasedTraceIdRatio(1.0))
    seen: list[SpanContext] = []

    class Child(Middleware):
        async def on_attempt(self, delivery: Delivery, call_next: Next) -> None:
            with provider.get_tracer("handler").start_as_current_span("lookup") as span:
                seen.append(span.get_span_context())
                await call_next(delivery)

    hop = Hop([TracingMiddleware(provider), Child()])
    await hop.handle_headers([("traceparent", f"00-{PARENT}-b7ad6b7169203331-00".encode())])
    (child,) = seen
    assert f"{child.trace_id:032x}" == PARENT
    assert not child.trace_flags.sampled
    traceparent = wire(hop)[0][1]
    assert traceparent is not None
    assert traceparent.startswith(f"00-{PARENT}-")
    assert traceparent.endswith("-00")


async def test_a_sampled_hop_still_records_both_spans_with_the_decided_trace_id() -> None:
    hop, probe, exporter = traced_hop(ParentBasedTraceIdRatio(1.0))
    await hop.handle_headers([])
    spans = exporter.get_finished_spans()
    assert len(spans) == 2
    assert {s.context.trace_id for s in spans if s.context} == {probe.contexts[0].trace_id}


# -- the relay (tracing off) ----------------------------------------------------------------


class Extra(TextMapPropagator):
    """A propagator that writes nothing: installed, the propagators are no longer the default."""

    def extract(
        self,
        carrier: CarrierT,
        context: Context | None = None,
        getter: Getter[CarrierT] = default_getter,
    ) -> Context:
        return context if context is not None else Context()

    def inject(
        self,
        carrier: CarrierT,
        context: Context | None = None,
        setter: Setter[CarrierT] = default_setter,
    ) -> None:
        return None

    @property
    def fields(self) -> set[str]:
        return {"x-nothing"}


def install_propagator_api() -> TextMapPropagator:
    """W3C trace context and baggage, plus one more: the relay goes through the propagator API.

    Returns the propagator installed before, to put back.
    """
    before = propagate.get_global_textmap()
    propagate.set_global_textmap(
        CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator(), Extra()])
    )
    return before


RELAYED: dict[str, list[tuple[str, bytes]]] = {
    "nothing": [],
    "traceparent": [("traceparent", f"00-{PARENT}-b7ad6b7169203331-01".encode())],
    "all": [
        ("traceparent", f"00-{PARENT}-b7ad6b7169203331-00".encode()),
        ("tracestate", b"v=2, w=3"),
        BAGGAGE,
    ],
    "later-version": [("traceparent", f"cc-{PARENT}-b7ad6b7169203331-01-what".encode())],
    "invalid": [("traceparent", f"00-{PARENT}-0000000000000000-01".encode()), BAGGAGE],
}


@pytest.mark.parametrize("case", RELAYED)
async def test_the_relay_writes_what_the_propagators_write_without_calling_them(
    case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected_hop = Hop([TraceContextRelay()])
    before = install_propagator_api()
    try:
        await expected_hop.handle_headers(list(RELAYED[case]))
    finally:
        propagate.set_global_textmap(before)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the default propagators' fast path went through the API")

    monkeypatch.setattr(_relay, "extract", refuse)
    monkeypatch.setattr(_relay, "inject", refuse)
    hop = Hop([TraceContextRelay()])
    await hop.handle_headers(list(RELAYED[case]))
    assert wire(hop) == wire(expected_hop)


async def test_the_relay_follows_propagators_installed_after_it_was_built(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    relay = TraceContextRelay()
    calls: list[str] = []

    def counted_extract(headers: Any) -> Context:
        calls.append("extract")
        return propagation_extract(headers)

    monkeypatch.setattr(_relay, "extract", counted_extract)
    await Hop([relay]).handle_headers(list(RELAYED["traceparent"]))
    assert calls == []  # the default propagators: read directly
    before = install_propagator_api()
    try:
        hop = Hop([relay])
        await hop.handle_headers(list(RELAYED["traceparent"]))
    finally:
        propagate.set_global_textmap(before)
    assert calls == ["extract"]
    assert wire(hop)[0][1] == RELAYED["traceparent"][0][1].decode()


async def test_the_relay_attaches_no_context_for_a_record_with_nothing_to_pass_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    attached: list[Context] = []
    attach = otel_context.attach

    def counted(context: Context) -> object:
        attached.append(context)
        return attach(context)

    monkeypatch.setattr(otel_context, "attach", counted)
    hop = Hop([TraceContextRelay()])
    await hop.handle_headers([])
    assert attached == []
    await hop.handle_headers(list(RELAYED["traceparent"]))
    assert len(attached) == 1


# -- the batch: no task machinery per record --------------------------------------------------


async def test_a_batch_of_handlers_that_never_wait_makes_no_gather_or_event_per_record(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hop = Hop([])
    records = [event_record(Placed(note=f"n{i}"), offset=i) for i in range(20)]
    made = {"gather": 0, "event": 0}
    gather, event = asyncio.gather, asyncio.Event

    def counting_gather(*aws: Any, **kwargs: Any) -> Any:
        made["gather"] += 1
        return gather(*aws, **kwargs)

    class CountingEvent(event):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            made["event"] += 1
            super().__init__()

    monkeypatch.setattr(asyncio, "gather", counting_gather)
    monkeypatch.setattr(asyncio, "Event", CountingEvent)
    assert await hop.processor.process(records, hop.consumer)
    assert made == {"gather": 0, "event": 0}
    assert len(hop.producer.to("inventory")) == 20
    assert hop.consumer.commits == [{TopicPartition("orders", 0): 20}]


# -- the codec's checks ------------------------------------------------------------------------

SAMPLES: Sequence[str] = [
    *(chr(c) for c in range(0x80)),
    "\x85",
    "\xad",
    "\u200b",
    "\u202e",
    "\ufeff",
    "\U000e0041",
    "é",
    "中",
    " ",
    "",
    "order-1 placed",
]


@pytest.mark.parametrize("text", SAMPLES, ids=repr)
def test_the_quick_attribute_check_agrees_with_the_full_one(text: str) -> None:
    forbidden = _FORBIDDEN.search(text) is not None
    assert (attribute_problem(text) is not None) is forbidden
    if forbidden:
        with pytest.raises(InvalidEnvelopeError):
            _checked("ce_source", text)
    else:
        assert _checked("ce_source", text) == check_attribute("ce_source", text) == text
    with pytest.raises(InvalidEnvelopeError):
        _checked("ce_source", text + "x" * 1025)


@pytest.mark.parametrize("raw", ["1", "2", "42", "99", "100", "0", "01", "-1", "+1", "\u0661", ""])
def test_known_dataversions_read_as_the_pattern_reads_them(raw: str) -> None:
    if raw in {"1", "2", "42", "99", "100"}:
        assert _version(raw) == int(raw)
    else:
        with pytest.raises(InvalidEnvelopeError):
            _version(raw)


def test_one_pass_over_the_headers_finds_what_a_pass_per_name_finds() -> None:
    headers: list[tuple[str, bytes | None]] = [
        ("a", b"1"),
        ("b", b"x"),
        ("a", b"2"),
        ("c", b"\xff"),
        ("d", None),
        ("e", b"5"),
        ("e", None),
    ]
    names = frozenset({"a", "b", "c", "d", "e", "f"})
    found = header_values(headers, names)
    assert found == {n: v for n in names if (v := header_value(headers, n)) is not None}


# -- the producer's batches -------------------------------------------------------------------


def test_a_full_polls_outputs_to_one_partition_fit_one_producer_batch() -> None:
    """A full batch makes the next send wait for it to drain: a loop turn inside the hop."""
    settings = KafkaSettings(bootstrap="127.0.0.1:9092", idempotence=Idempotence.OFF)
    eid = new_event_id()
    envelope = Envelope(eid, "/services/inventory", "stock.reserved", 1, record_time(0), eid, eid)
    record = sum(len(k) + len(v) for k, v in encode_headers(envelope)) + len(eid) + 100
    batch = producer_options(settings, idempotent=False)["max_batch_size"]
    assert batch >= settings.max_batch * record


class CountedFuture(asyncio.Future[RecordMetadata]):
    """A send's future that counts the callbacks put on it."""

    callbacks = 0

    def add_done_callback(self, fn: Any, *, context: Any = None) -> None:
        CountedFuture.callbacks += 1
        super().add_done_callback(fn, context=context)


class PendingProducer:
    """Takes sends and acknowledges them all at once, as one produce response does."""

    def __init__(self, expected: int) -> None:
        self.futures: list[CountedFuture] = []
        self.expected = expected
        self.all_sent = asyncio.Event()

    async def send(self, topic: str, **kwargs: Any) -> CountedFuture:
        future = CountedFuture()
        self.futures.append(future)
        if len(self.futures) == self.expected:
            self.all_sent.set()
        return future

    def acknowledge(self) -> None:
        for offset, future in enumerate(self.futures):
            tp = TopicPartition("inventory", 0)
            future.set_result(RecordMetadata("inventory", 0, tp, offset, -1, 0, -1))


async def test_a_batchs_acknowledgements_are_awaited_without_a_callback_on_every_send() -> None:
    hop = Hop([])
    records = [event_record(Placed(note=f"n{i}"), offset=i) for i in range(20)]
    producer = PendingProducer(len(records))
    hop.processor._dispatcher._publisher._producer = producer
    CountedFuture.callbacks = 0
    processing = asyncio.ensure_future(hop.processor.process(records, hop.consumer))
    await asyncio.wait_for(producer.all_sent.wait(), 5)
    producer.acknowledge()
    assert await processing
    assert CountedFuture.callbacks == 1  # the first send's: the others are done by then
    assert hop.consumer.commits == [{TopicPartition("orders", 0): 20}]
