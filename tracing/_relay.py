"""Tracing off, trace kept: pass an incoming trace context on to what the handler publishes."""

from __future__ import annotations

from opentelemetry import baggage as otel_baggage
from opentelemetry import context as otel_context
from opentelemetry import propagate
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import NonRecordingSpan, get_current_span, set_span_in_context

from choreokit.events import Delivery, Envelope, Middleware, Outbound
from choreokit.tracing._context import handling
from choreokit.tracing._hooks import Next, Send, SendFuture
from choreokit.tracing._propagation import (
    Headers,
    baggage_context,
    extract,
    inject,
    uses_default_propagators,
    with_current_baggage,
    with_trace_of,
)
from choreokit.tracing._traceparent import parse_traceparent


class TraceContextRelay(Middleware):
    """Carries a handled record's trace context and baggage to the events it causes.

    The middleware a service gets when tracing is off (no exporter endpoint, or
    ``OTEL_SDK_DISABLED=true``): it makes no spans, it only passes the context
    on, so an untraced service in the middle of a flow does not break the
    trace. Downstream spans become children of the last traced producer, as if
    this hop were not there. Events published outside a handler start no trace.

    The context is read and written by the configured propagators
    (``OTEL_PROPAGATORS``), so b3 or W3C baggage pass through as well as W3C
    trace context. With the default propagators (W3C trace context and
    baggage) it reads the envelope's ``traceparent`` and writes the same
    headers directly, as the tracing middleware does; a record with no trace
    context and no baggage costs no context switch and nothing on publish.
    """

    def __init__(self) -> None:
        self._propagator: TextMapPropagator | None = None
        self._default = False

    def _direct(self) -> bool:
        """Whether the global propagators are the default ones (checked again if replaced)."""
        propagator = propagate.get_global_textmap()
        if propagator is not self._propagator:
            self._propagator, self._default = propagator, uses_default_propagators()
        return self._default

    async def on_delivery(self, delivery: Delivery, call_next: Next) -> None:
        """Make the handled record's context current while it is being handled."""
        if self._direct():
            context = _w3c_context(delivery.envelope, delivery.record.headers)
        else:
            context = extract(delivery.record.headers)
        # Nothing to pass on, and nothing current: the handler sees an empty context already.
        attached = otel_context.attach(context) if context or otel_context.get_current() else None
        token = handling.set(delivery.envelope)
        try:
            await call_next(delivery)
        finally:
            handling.reset(token)
            if attached is not None:
                otel_context.detach(attached)

    async def on_publish(self, outbound: Outbound, send: Send) -> SendFuture:
        """Give an event published while handling the trace context of the handled record."""
        if handling.get() is None or outbound.envelope.traceparent is not None:
            return await send(outbound)
        if not self._direct():
            return await send(inject(outbound))
        current = otel_context.get_current()
        if not current:  # an empty context: no span and no baggage, nothing to write
            return await send(outbound)
        # What propagate.inject writes with the default propagators, without its carrier.
        traced = with_trace_of(outbound, get_current_span(current).get_span_context())
        if otel_baggage.get_all(current):
            traced = with_current_baggage(traced)
        return await send(traced)


_NOTHING = Context()
"""The context of a handled record without trace context or baggage."""


def _w3c_context(envelope: Envelope, headers: Headers) -> Context:
    """What W3C trace context and baggage propagators extract, read from the envelope."""
    base = baggage_context(headers)
    traceparent = envelope.traceparent
    parent = parse_traceparent(traceparent, envelope.tracestate) if traceparent else None
    if parent is None:
        return base or _NOTHING
    return set_span_in_context(NonRecordingSpan(parent), base)
