"""The tracing middlewares in memory: spans, parentage, attributes, propagation, the relay."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased, Sampler
from opentelemetry.trace import (
    SpanKind,
    StatusCode,
    format_span_id,
    format_trace_id,
    get_current_span,
    set_span_in_context,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from choreokit.events import Event, HandlerContext, Middleware, Publisher, Registry, RetryPolicy
from choreokit.events._batch import BatchProcessor
from choreokit.events._consumer import ConsumerStats, Dispatcher, UnknownTypePolicy
from choreokit.events._handling import HandlerSpec
from choreokit.tracing import (
    TraceContextRelay,
    TracingMiddleware,
    flow_label,
    format_traceparent,
)
from choreokit.tracing import _naming as names
from tests.support import FakeConsumer, FakeProducer, event_record

reg = Registry()
SECRET = "payload-secret-7f3a"


class Placed(Event, type="order.placed", version=1, topic="orders", registry=reg):
    note: str


class Reserved(Event, type="stock.reserved", version=1, topic="inventory", registry=reg):
    note: str


FAST = RetryPolicy(max_attempts=3, first_backoff=timedelta(0), jitter=0)
PARENT_TRACE = "0af7651916cd43dd8448eb211c80319c"
PARENT_SPAN = "b7ad6b7169203331"
TRACEPARENT = f"00-{PARENT_TRACE}-{PARENT_SPAN}-01"


class Hop:
    """A handler of order.placed that publishes stock.reserved, behind the given middlewares."""

    def __init__(self, middlewares: Sequence[Middleware], *, fail: int = 0) -> None:
        self.producer = FakeProducer()
        self.consumer = FakeConsumer()
        self.fail = fail
        publisher = Publisher(self.producer, source="/services/inventory", middlewares=middlewares)

        async def reserve(event: Placed, ctx: HandlerContext) -> None:
            if ctx.attempt <= self.fail:
                raise TimeoutError(f"database busy while handling {event.note}")
            await ctx.publish(Reserved(note=event.note))

        spec = HandlerSpec(name="reserve", model=Placed, fn=reserve, takes_context=True)
        self.processor = BatchProcessor(
            Dispatcher(
                routes={"orders": {"order.placed": spec}},
                registry=reg,
                group="inventory",
                publisher=publisher,
                middlewares=middlewares,
                retry=FAST,
                unknown_types=UnknownTypePolicy.DEAD_LETTER,
                stats=ConsumerStats(),
            )
        )

    async def handle(self) -> None:
        record = event_record(Placed(note=SECRET), offset=7, partition=2)
        await self.processor.process([record], self.consumer)
        await self.processor.settle()

    async def handle_headers(self, extra: list[tuple[str, bytes]]) -> None:
        record = event_record(Placed(note=SECRET), offset=7, partition=2, correlation_id="flow-1")
        record.headers.extend(extra)
        await self.processor.process([record], self.consumer)
        await self.processor.settle()


def traced(sampler: Sampler = ALWAYS_ON) -> tuple[TracingMiddleware, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=sampler)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return TracingMiddleware(provider), exporter


def by_kind(spans: Sequence[ReadableSpan], kind: SpanKind) -> ReadableSpan:
    found = [s for s in spans if s.kind is kind]
    assert len(found) == 1, spans
    return found[0]


def hex_ids(span: ReadableSpan) -> tuple[str, str]:
    ctx = span.get_span_context()
    assert ctx is not None
    return format_trace_id(ctx.trace_id), format_span_id(ctx.span_id)


# -- naming --------------------------------------------------------------------------------


def test_span_names_and_attribute_keys_follow_the_current_messaging_conventions() -> None:
    assert names.send_span_name("orders") == "send orders"
    assert names.process_span_name("orders") == "process orders"
    assert (names.KAFKA, names.SEND, names.PROCESS) == ("kafka", "send", "process")
    pinned = {
        "MESSAGING_SYSTEM": "messaging.system",
        "MESSAGING_OPERATION_NAME": "messaging.operation.name",
        "MESSAGING_OPERATION_TYPE": "messaging.operation.type",
        "MESSAGING_DESTINATION_NAME": "messaging.destination.name",
        "MESSAGING_DESTINATION_PARTITION_ID": "messaging.destination.partition.id",
        "MESSAGING_KAFKA_OFFSET": "messaging.kafka.offset",
        "MESSAGING_CONSUMER_GROUP_NAME": "messaging.consumer.group.name",
        "MESSAGING_MESSAGE_ID": "messaging.message.id",
        "MESSAGING_MESSAGE_CONVERSATION_ID": "messaging.message.conversation_id",
        "CLOUDEVENTS_EVENT_ID": "cloudevents.event_id",
        "CLOUDEVENTS_EVENT_SOURCE": "cloudevents.event_source",
        "CLOUDEVENTS_EVENT_TYPE": "cloudevents.event_type",
        "CLOUDEVENTS_EVENT_SPEC_VERSION": "cloudevents.event_spec_version",
        "ERROR_TYPE": "error.type",
        "EXCEPTION_TYPE": "exception.type",
        "EXCEPTION_EVENT": "exception",
    }
    assert {name: getattr(names, name) for name in pinned} == pinned
    keys = [
        n
        for n in names.__all__
        if n.isupper() and n.startswith(("MESSAGING", "CLOUD", "ERR", "EXC"))
    ]
    assert sorted(keys) == sorted(pinned), "a key was added or removed: pin it here"
    assert names.SCHEMA_URL == "https://opentelemetry.io/schemas/1.44.0"


def test_error_type_is_the_exported_class_name() -> None:
    from aiokafka.errors import KafkaTimeoutError

    from choreokit.events import PublishError

    assert names.error_type(TimeoutError()) == "TimeoutError"
    assert names.error_type(PublishError("x")) == "choreokit.events.PublishError"
    assert names.error_type(KafkaTimeoutError()) == "aiokafka.errors.KafkaTimeoutError"


def test_traceparent_is_written_as_the_w3c_propagator_writes_it() -> None:
    middleware, _ = traced()
    span = middleware._spans.start("x", SpanKind.PRODUCER, None, None)
    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier, context=set_span_in_context(span))
    assert format_traceparent(span.get_span_context()) == carrier["traceparent"]


# -- spans ---------------------------------------------------------------------------------


async def test_a_handled_record_continues_the_producers_trace_and_its_output_carries_it() -> None:
    middleware, exporter = traced()
    hop = Hop([middleware])
    await hop.handle_headers([("traceparent", TRACEPARENT.encode()), ("tracestate", b"vendor=1")])

    spans = exporter.get_finished_spans()
    assert len(spans) == 2
    consumer = by_kind(spans, SpanKind.CONSUMER)
    producer = by_kind(spans, SpanKind.PRODUCER)
    assert consumer.name == "process orders"
    assert producer.name == "send inventory"
    assert consumer.parent is not None
    assert consumer.parent.is_remote
    assert format_span_id(consumer.parent.span_id) == PARENT_SPAN
    assert hex_ids(consumer)[0] == hex_ids(producer)[0] == PARENT_TRACE
    assert producer.parent is not None
    consumer_context = consumer.get_span_context()
    assert consumer_context is not None
    assert producer.parent.span_id == consumer_context.span_id
    assert consumer_context.trace_state.get("vendor") == "1"

    sent = hop.producer.to("inventory")[0]
    trace_id, span_id = hex_ids(producer)
    assert sent.header("traceparent") == f"00-{trace_id}-{span_id}-01"
    assert sent.header("tracestate") == "vendor=1"


async def test_span_attributes_follow_the_conventions_and_never_carry_payload_or_key() -> None:
    middleware, exporter = traced()
    hop = Hop([middleware])
    await hop.handle_headers([("traceparent", TRACEPARENT.encode())])
    consumer = by_kind(exporter.get_finished_spans(), SpanKind.CONSUMER)
    producer = by_kind(exporter.get_finished_spans(), SpanKind.PRODUCER)
    handled_id = dict(consumer.attributes or {})["messaging.message.id"]
    assert dict(consumer.attributes or {}) == {
        "messaging.system": "kafka",
        "messaging.operation.name": "process",
        "messaging.operation.type": "process",
        "messaging.destination.name": "orders",
        "messaging.destination.partition.id": "2",
        "messaging.kafka.offset": 7,
        "messaging.consumer.group.name": "inventory",
        "messaging.message.id": handled_id,
        "messaging.message.conversation_id": flow_label("flow-1"),
        "cloudevents.event_id": handled_id,
        "cloudevents.event_source": "/tests",
        "cloudevents.event_type": "order.placed",
        "cloudevents.event_spec_version": "1.0",
    }
    sent = hop.producer.to("inventory")[0]
    assert dict(producer.attributes or {}) == {
        "messaging.system": "kafka",
        "messaging.operation.name": "send",
        "messaging.operation.type": "send",
        "messaging.destination.name": "inventory",
        "messaging.destination.partition.id": "0",
        "messaging.kafka.offset": 0,
        "messaging.message.id": sent.header("ce_id"),
        "messaging.message.conversation_id": flow_label("flow-1"),
        "cloudevents.event_id": sent.header("ce_id"),
        "cloudevents.event_source": "/services/inventory",
        "cloudevents.event_type": "stock.reserved",
        "cloudevents.event_spec_version": "1.0",
    }
    for span in (consumer, producer):
        values = [str(v) for v in (span.attributes or {}).values()]
        values += [str(v) for e in span.events for v in (e.attributes or {}).values()]
        assert not any(SECRET in v for v in values)
        assert "messaging.kafka.message.key" not in (span.attributes or {})


async def test_a_record_without_trace_context_starts_a_new_trace() -> None:
    middleware, exporter = traced()
    await Hop([middleware]).handle()
    consumer = by_kind(exporter.get_finished_spans(), SpanKind.CONSUMER)
    producer = by_kind(exporter.get_finished_spans(), SpanKind.PRODUCER)
    assert consumer.parent is None
    assert hex_ids(consumer)[0] != PARENT_TRACE
    assert hex_ids(producer)[0] == hex_ids(consumer)[0]


async def test_failed_tries_are_exception_events_and_a_dead_letter_sets_error_type() -> None:
    middleware, exporter = traced()
    hop = Hop([middleware], fail=5)
    await hop.handle()
    consumer = by_kind(exporter.get_finished_spans(), SpanKind.CONSUMER)
    assert [e.name for e in consumer.events] == ["exception"] * 3
    assert all(
        dict(e.attributes or {}) == {"exception.type": "TimeoutError"} for e in consumer.events
    )
    assert dict(consumer.attributes or {})["error.type"] == "TimeoutError"
    assert consumer.status.status_code is StatusCode.ERROR
    assert consumer.status.description is None  # the message may quote the payload
    assert hop.producer.to("orders.dlq"), "the record went to the dead-letter topic"
    assert not [s for s in exporter.get_finished_spans() if s.kind is SpanKind.PRODUCER]


async def test_a_retried_success_keeps_one_span_with_the_failed_try_noted() -> None:
    middleware, exporter = traced()
    await Hop([middleware], fail=1).handle()
    consumer = by_kind(exporter.get_finished_spans(), SpanKind.CONSUMER)
    assert [e.name for e in consumer.events] == ["exception"]
    assert "error.type" not in (consumer.attributes or {})
    assert consumer.status.status_code is StatusCode.UNSET


async def test_a_refused_send_ends_its_span_with_error_type() -> None:
    middleware, exporter = traced()
    hop = Hop([middleware])
    hop.producer.failing_topics.add("inventory")
    await hop.handle()
    producer = by_kind(exporter.get_finished_spans(), SpanKind.PRODUCER)
    assert dict(producer.attributes or {})["error.type"] == "aiokafka.errors.KafkaTimeoutError"
    assert producer.status.status_code is StatusCode.ERROR
    assert "messaging.kafka.offset" not in (producer.attributes or {})


async def test_the_consumer_span_is_current_in_the_handler_and_ends_after_the_sends() -> None:
    middleware, exporter = traced()
    seen: list[str] = []
    hop = Hop([middleware])
    original = hop.processor._dispatcher._attempt

    async def spy(delivery: Any) -> None:
        seen.append(format_span_id(get_current_span().get_span_context().span_id))
        await original(delivery)

    hop.processor._dispatcher._attempt = spy
    await hop.handle()
    consumer = by_kind(exporter.get_finished_spans(), SpanKind.CONSUMER)
    producer = by_kind(exporter.get_finished_spans(), SpanKind.PRODUCER)
    assert seen == [hex_ids(consumer)[1]]
    assert consumer.start_time is not None
    assert producer.start_time is not None
    assert consumer.end_time is not None
    assert producer.start_time < consumer.end_time


async def test_an_unsampled_trace_is_not_recorded_but_its_context_still_travels() -> None:
    middleware, exporter = traced(ParentBased(ALWAYS_OFF))
    hop = Hop([middleware])
    await hop.handle_headers([("traceparent", f"00-{PARENT_TRACE}-{PARENT_SPAN}-00".encode())])
    assert exporter.get_finished_spans() == ()
    sent = hop.producer.to("inventory")[0]
    header = sent.header("traceparent")
    assert header is not None
    assert header.startswith(f"00-{PARENT_TRACE}-")
    assert header.endswith("-00")


async def test_a_publish_outside_a_handler_is_a_root_producer_span() -> None:
    middleware, exporter = traced()
    producer = FakeProducer()
    publisher = Publisher(producer, source="/services/gateway", middlewares=[middleware])
    await publisher.publish(Placed(note="x"))
    await asyncio.sleep(0)  # noqa: sleep-ok - lets the acknowledgement's callback end the span
    span = by_kind(exporter.get_finished_spans(), SpanKind.PRODUCER)
    assert span.parent is None
    header = producer.sent[0].header("traceparent")
    assert header is not None
    assert header.startswith(f"00-{hex_ids(span)[0]}-{hex_ids(span)[1]}-")


# -- tracing off: the relay ----------------------------------------------------------------


async def test_the_relay_passes_incoming_trace_context_to_what_the_handler_publishes() -> None:
    hop = Hop([TraceContextRelay()])
    await hop.handle_headers([("traceparent", TRACEPARENT.encode()), ("tracestate", b"v=2")])
    sent = hop.producer.to("inventory")[0]
    assert sent.header("traceparent") == TRACEPARENT
    assert sent.header("tracestate") == "v=2"


async def test_the_relay_invents_no_trace_context() -> None:
    hop = Hop([TraceContextRelay()])
    await hop.handle()
    assert hop.producer.to("inventory")[0].header("traceparent") is None
    producer = FakeProducer()
    await Publisher(producer, source="/x", middlewares=[TraceContextRelay()]).publish(
        Placed(note="x")
    )
    assert producer.sent[0].header("traceparent") is None


async def test_without_the_relay_an_untraced_hop_would_break_the_trace() -> None:
    """The control for the relay tests: the event layer alone does not carry trace context."""
    hop = Hop([])
    await hop.handle_headers([("traceparent", TRACEPARENT.encode())])
    assert hop.producer.to("inventory")[0].header("traceparent") is None


@pytest.mark.parametrize("sampler", [ALWAYS_ON, ALWAYS_OFF])
async def test_a_relay_hop_between_traced_hops_keeps_one_trace(sampler: Sampler) -> None:
    first, _ = traced(sampler)
    upstream = FakeProducer()
    await Publisher(upstream, source="/a", middlewares=[first]).publish(Placed(note="x"))
    context = upstream.sent[0].header("traceparent")
    assert context is not None
    relay = Hop([TraceContextRelay()])
    await relay.handle_headers([("traceparent", context.encode())])
    assert relay.producer.to("inventory")[0].header("traceparent") == context


def test_an_invalid_span_context_writes_no_traceparent() -> None:
    from opentelemetry.trace import INVALID_SPAN_CONTEXT

    from choreokit.events import Outbound
    from choreokit.tracing._propagation import with_trace_of
    from tests.support import envelope_for

    event = Placed(note="x")
    outbound = Outbound("orders", b"k", b"{}", envelope_for(event), event)
    assert with_trace_of(outbound, INVALID_SPAN_CONTEXT) is outbound


@pytest.mark.parametrize(
    "header",
    [
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 ",
        "garbage",
    ],
)
def test_parse_traceparent_reads_what_the_w3c_propagator_reads(header: str) -> None:
    """The one traceparent parser (tracing, the observer) agrees with OpenTelemetry's."""
    from opentelemetry.context import Context
    from opentelemetry.trace import get_current_span
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    from choreokit.tracing import parse_traceparent

    carrier = {"traceparent": header, "tracestate": "vendor=1"}
    expected = get_current_span(
        TraceContextTextMapPropagator().extract(carrier, context=Context())
    ).get_span_context()
    parsed = parse_traceparent(header, "vendor=1")
    if not expected.is_valid:
        assert parsed is None
    else:
        assert parsed == expected
        assert parsed.trace_state == expected.trace_state
