"""The tracing middleware: a CONSUMER span per handled record, a PRODUCER span per send."""

from __future__ import annotations

import asyncio
from functools import partial

from opentelemetry import baggage as otel_baggage
from opentelemetry import context as otel_context
from opentelemetry.context import Context
from opentelemetry.sdk.trace import Tracer as SdkTracer
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    Span,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TracerProvider,
    TraceState,
    get_current_span,
    set_span_in_context,
)

from choreokit.events import Delivery, Middleware, Outbound
from choreokit.tracing import _naming as names
from choreokit.tracing._context import handling
from choreokit.tracing._hooks import Next, Send, SendFuture
from choreokit.tracing._propagation import (
    baggage_context,
    extract,
    inject,
    uses_default_propagators,
    with_current_baggage,
    with_trace_of,
)
from choreokit.tracing._spans import FlowSpan, SampledOutSpan, SharedAttributes, SpanFactory
from choreokit.tracing._traceparent import parse_traceparent, version_00_ids

_NO_PARENT = Context()
_NO_STATE = TraceState()


class TracingMiddleware(Middleware):
    """Makes every handled record and every publish a span of the flow's trace.

    * Handling a record is a CONSUMER span ``process <topic>``, child of the
      producer whose ``traceparent``/``tracestate`` the record carries (a record
      without them starts a new trace). It spans the retries and the sending of
      what the handler published, is current while the handler runs (spans the
      handler makes are its children; logs carry its ids), and gets an
      ``exception`` event with ``exception.type`` per failed try and ``error.type``
      when the record is dead-lettered.
    * Publishing is a PRODUCER span ``send <topic>``, child of the current span;
      its context rides in the record's headers. It ends when the broker
      acknowledges the record (with its partition and offset) or refuses it
      (with ``error.type``).

    Attribute keys and span names are in ``choreokit.tracing._naming``; no payload, no
    record key and no exception message ever becomes an attribute or event.

    Context crosses each hop through OpenTelemetry's propagator API
    (``OTEL_PROPAGATORS``: W3C trace context and baggage by default, b3, jaeger,
    ...); the W3C baggage of a handled record is current while its handler runs
    and rides on what it publishes.

    Args:
        tracer_provider: Where spans go (``choreokit.tracing.configure`` builds one from the
            environment; tests pass one with an in-memory exporter).
        direct_w3c: When the configured propagators are exactly the default
            ones (W3C trace context and baggage), read and write those headers
            directly instead of through ``propagate.extract``/``inject``: same
            headers, less work per hop (see docs/benchmarks.md). Ignored for any
            other propagators.
    """

    def __init__(self, tracer_provider: TracerProvider, *, direct_w3c: bool = True) -> None:
        tracer = tracer_provider.get_tracer(names.INSTRUMENTATION_NAME, schema_url=names.SCHEMA_URL)
        if not isinstance(tracer, SdkTracer):
            raise TypeError(
                "TracingMiddleware needs the OpenTelemetry SDK's TracerProvider "
                f"(opentelemetry.sdk.trace), not {type(tracer_provider).__name__}"
            )
        scope = InstrumentationScope(names.INSTRUMENTATION_NAME, None, names.SCHEMA_URL)
        self._spans = SpanFactory(tracer, scope)
        self._direct = direct_w3c and uses_default_propagators()
        # A standard sampler decides from the ids alone: a hop it samples out needs no span.
        self._decide = self._spans.decide if self._direct else None
        self._ids = self._spans.ids
        self._consumers: dict[tuple[str, str], tuple[str, SharedAttributes]] = {}
        self._producers: dict[str, tuple[str, SharedAttributes]] = {}

    def _consumer(self, topic: str, group: str) -> tuple[str, SharedAttributes]:
        """The name and shared attributes of ``group``'s ``process`` spans on ``topic``."""
        known = self._consumers.get((topic, group))
        if known is None:
            shared = SharedAttributes(names.consumer_fixed_attributes(topic, group))
            known = self._consumers[topic, group] = (names.process_span_name(topic), shared)
        return known

    def _producer(self, topic: str) -> tuple[str, SharedAttributes]:
        """The name and shared attributes of ``send`` spans to ``topic``."""
        known = self._producers.get(topic)
        if known is None:
            shared = SharedAttributes(names.producer_fixed_attributes(topic))
            known = self._producers[topic] = (names.send_span_name(topic), shared)
        return known

    async def on_delivery(self, delivery: Delivery, call_next: Next) -> None:
        """Handle the record inside its ``process`` span, continuing the producer's trace."""
        envelope = delivery.envelope
        record = delivery.record
        parent = None
        trace_id = None
        if self._direct:
            base = baggage_context(record.headers)
            if self._decide is not None:
                ids = self._sampled_out(envelope.traceparent, envelope.tracestate)
                if isinstance(ids, SampledOutSpan):
                    await _handle_sampled_out(delivery, call_next, ids, base)
                    return
                trace_id = ids
            if envelope.traceparent is not None:
                parent = parse_traceparent(envelope.traceparent, envelope.tracestate)
            # Without a (valid) trace context the record starts a new trace, whatever is current.
            context = None if parent is not None else base
        else:
            base = extract(record.headers)
            remote = get_current_span(base).get_span_context()
            parent = remote if remote.is_valid else None
            context = base
        name, shared = self._consumer(record.topic, delivery.group)
        span = self._spans.start(
            name, SpanKind.CONSUMER, parent, context, shared, trace_id=None if parent else trace_id
        )
        if type(span) is FlowSpan:  # attributes only for spans that will be exported
            span.record(names.consumer_attributes(record, envelope))
        token = otel_context.attach(set_span_in_context(span, base))
        flow = handling.set(envelope)
        try:
            await call_next(delivery)
        except BaseException as exc:
            _failed(span, exc)
            raise
        finally:
            handling.reset(flow)
            otel_context.detach(token)
            span.end()

    async def on_attempt(self, delivery: Delivery, call_next: Next) -> None:
        """Note each failed try of the handler as an ``exception`` event (type only)."""
        try:
            await call_next(delivery)
        except Exception as exc:
            span = get_current_span()
            if span.is_recording():
                span.add_event(names.EXCEPTION_EVENT, {names.EXCEPTION_TYPE: names.error_type(exc)})
            raise

    def _sampled_out(
        self, traceparent: str | None, tracestate: str | None
    ) -> SampledOutSpan | int | None:
        """The ``process`` span of a record when it is not sampled, decided from the ids alone.

        Returns the span when the sampler says no; else the new trace's id when the
        record starts one (the sampled span must get the id decided on), else ``None``.
        """
        decide = self._decide
        assert decide is not None
        if traceparent is None:
            trace_id = self._ids.generate_trace_id()
            if decide(None, trace_id):
                return trace_id
            flags = TraceFlags.RANDOM_TRACE_ID if self._spans.random_ids else 0
            return SampledOutSpan(trace_id, self._ids.generate_span_id(), flags, _NO_STATE)
        ids = version_00_ids(traceparent)
        if ids is None:  # another version, or not valid: read by the propagator's rules
            return None
        trace_id, _, parent_flags = ids
        if decide(parent_flags, trace_id):
            return None
        state = TraceState.from_header([tracestate]) if tracestate else _NO_STATE
        flags = parent_flags & TraceFlags.RANDOM_TRACE_ID
        return SampledOutSpan(trace_id, self._ids.generate_span_id(), flags, state)

    async def on_publish(self, outbound: Outbound, send: Send) -> SendFuture:
        """Send the record inside its ``send`` span, with that span's context in its headers."""
        current_span = get_current_span()
        if type(current_span) is SampledOutSpan and self._direct:
            # Not sampled either: only a new span id, in the traceparent the SDK's span would give.
            traceparent = current_span.child_traceparent(self._ids.generate_span_id())
            traced = Outbound(
                outbound.topic,
                outbound.key,
                outbound.value,
                outbound.envelope.with_trace(traceparent, current_span.tracestate),
                outbound.event,
                outbound.headers,
            )
            if otel_baggage.get_all():
                traced = with_current_baggage(traced)
            return await send(traced)
        current = current_span.get_span_context()
        name, shared = self._producer(outbound.topic)
        parent = current if current.is_valid else None
        span = self._spans.start(name, SpanKind.PRODUCER, parent, None, shared)
        if type(span) is FlowSpan:
            span.record(names.producer_attributes(outbound))
        if self._direct:
            traced = with_trace_of(outbound, span.get_span_context())
            if otel_baggage.get_all():
                traced = with_current_baggage(traced)
        else:
            traced = inject(outbound, set_span_in_context(span))
        try:
            future = await send(traced)
        except BaseException as exc:
            _failed(span, exc)
            span.end()
            raise
        if type(span) is FlowSpan:  # a sampled-out span records nothing on acknowledgement
            future.add_done_callback(partial(_acknowledged, span))
        return future


async def _handle_sampled_out(
    delivery: Delivery, call_next: Next, span: SampledOutSpan, base: Context
) -> None:
    """Handle the record with its not-sampled ``process`` span current (nothing to record)."""
    token = otel_context.attach(set_span_in_context(span, base))
    flow = handling.set(delivery.envelope)
    try:
        await call_next(delivery)
    finally:
        handling.reset(flow)
        otel_context.detach(token)


def _failed(span: Span, error: BaseException) -> None:
    if span.is_recording():
        span.set_attribute(names.ERROR_TYPE, names.error_type(error))
        span.set_status(Status(StatusCode.ERROR))


def _acknowledged(span: Span, future: SendFuture) -> None:
    if future.cancelled():
        _failed(span, asyncio.CancelledError())
    elif (error := future.exception()) is not None:
        _failed(span, error)
    elif type(span) is FlowSpan:
        metadata = future.result()
        span.record(names.acknowledged_attributes(metadata.partition, metadata.offset))
    span.end()
