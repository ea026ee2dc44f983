"""The tracing middleware: a CONSUMER span per handled record, a PRODUCER span per send."""

from __future__ import annotations

import asyncio
from functools import partial

from opentelemetry import context as otel_context
from opentelemetry.context import Context
from opentelemetry.trace import (
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    Tracer,
    TracerProvider,
    get_current_span,
    set_span_in_context,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from events import Delivery, Middleware, Outbound
from tracing import _naming as names
from tracing._context import handling
from tracing._hooks import Next, Send, SendFuture

_TRACEPARENT = "traceparent"
_TRACESTATE = "tracestate"


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

    Attribute keys and span names are in ``tracing._naming``; no payload, no
    record key and no exception message ever becomes an attribute or event.

    Args:
        tracer_provider: Where spans go (``tracing.configure`` builds one from the
            environment; tests pass one with an in-memory exporter).
    """

    def __init__(self, tracer_provider: TracerProvider) -> None:
        self._tracer: Tracer = tracer_provider.get_tracer(
            names.INSTRUMENTATION_NAME, schema_url=names.SCHEMA_URL
        )
        self._propagator = TraceContextTextMapPropagator()

    async def on_delivery(self, delivery: Delivery, call_next: Next) -> None:
        """Handle the record inside its ``process`` span, continuing the producer's trace."""
        envelope = delivery.envelope
        record = delivery.record
        if envelope.traceparent is None:
            parent = Context()  # no trace context: a new trace, whatever is current
        else:
            carrier = {_TRACEPARENT: envelope.traceparent}
            if envelope.tracestate:
                carrier[_TRACESTATE] = envelope.tracestate
            parent = self._propagator.extract(carrier, context=Context())
        span = self._tracer.start_span(
            names.process_span_name(record.topic),
            context=parent,
            kind=SpanKind.CONSUMER,
            record_exception=False,
            set_status_on_exception=False,
        )
        if span.is_recording():  # attributes only for spans that will be exported
            span.set_attributes(names.consumer_attributes(record, envelope, delivery.group))
        token = otel_context.attach(set_span_in_context(span))
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

    async def on_publish(self, outbound: Outbound, send: Send) -> SendFuture:
        """Send the record inside its ``send`` span, with that span's context in its headers."""
        span = self._tracer.start_span(
            names.send_span_name(outbound.topic),
            kind=SpanKind.PRODUCER,
            record_exception=False,
            set_status_on_exception=False,
        )
        if span.is_recording():
            span.set_attributes(names.producer_attributes(outbound))
        traced = with_trace_of(outbound, span.get_span_context())
        try:
            future = await send(traced)
        except BaseException as exc:
            _failed(span, exc)
            span.end()
            raise
        if span.is_recording():  # a sampled-out span has nothing to record on acknowledgement
            future.add_done_callback(partial(_acknowledged, span))
        return future


def traceparent(span_context: SpanContext) -> str:
    """The W3C ``traceparent`` of ``span_context``, as ``TraceContextTextMapPropagator`` writes it.

    Written here rather than through ``inject`` because it runs on every publish
    and needs no carrier or context object.
    """
    return (
        f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-"
        f"{span_context.trace_flags:02x}"
    )


def with_trace_of(outbound: Outbound, span_context: SpanContext) -> Outbound:
    """``outbound`` carrying ``span_context`` as its trace context (unchanged if it is invalid)."""
    if not span_context.is_valid:  # a disabled tracer: write no all-zero traceparent
        return outbound
    state = span_context.trace_state.to_header() if span_context.trace_state else None
    return Outbound(
        outbound.topic,
        outbound.key,
        outbound.value,
        outbound.envelope.with_trace(traceparent(span_context), state),
        outbound.event,
    )


def _failed(span: Span, error: BaseException) -> None:
    if span.is_recording():
        span.set_attribute(names.ERROR_TYPE, names.error_type(error))
        span.set_status(Status(StatusCode.ERROR))


def _acknowledged(span: Span, future: SendFuture) -> None:
    if future.cancelled():
        _failed(span, asyncio.CancelledError())
    elif (error := future.exception()) is not None:
        _failed(span, error)
    elif span.is_recording():
        metadata = future.result()
        span.set_attributes(names.acknowledged_attributes(metadata.partition, metadata.offset))
    span.end()
