"""Tracing off, trace kept: pass an incoming trace context on to what the handler publishes."""

from __future__ import annotations

from opentelemetry import baggage as otel_baggage
from opentelemetry import context as otel_context

from choreokit.events import Delivery, Middleware, Outbound
from choreokit.tracing._context import handling
from choreokit.tracing._hooks import Next, Send, SendFuture
from choreokit.tracing._propagation import (
    baggage_context,
    extract,
    inject,
    uses_default_propagators,
    with_current_baggage,
)


class TraceContextRelay(Middleware):
    """Carries a handled record's trace context and baggage to the events it causes.

    The middleware a service gets when tracing is off (no exporter endpoint, or
    ``OTEL_SDK_DISABLED=true``): it makes no spans, it only passes the context
    on, so an untraced service in the middle of a flow does not break the
    trace. Downstream spans become children of the last traced producer, as if
    this hop were not there. Events published outside a handler start no trace.

    The context is read and written by the configured propagators
    (``OTEL_PROPAGATORS``). With the default ones (W3C trace context and
    baggage) and ``direct_w3c`` on, the ``traceparent``/``tracestate`` strings
    are copied as they are, without parsing.

    Args:
        direct_w3c: Copy W3C headers directly when the propagators are the
            default ones (see :class:`TracingMiddleware`).
    """

    def __init__(self, *, direct_w3c: bool = True) -> None:
        self._direct = direct_w3c and uses_default_propagators()

    async def on_delivery(self, delivery: Delivery, call_next: Next) -> None:
        """Make the handled record's context current while it is being handled."""
        headers = delivery.record.headers
        context = baggage_context(headers) if self._direct else extract(headers)
        attached = otel_context.attach(context)
        token = handling.set(delivery.envelope)
        try:
            await call_next(delivery)
        finally:
            handling.reset(token)
            otel_context.detach(attached)

    async def on_publish(self, outbound: Outbound, send: Send) -> SendFuture:
        """Give an event published while handling the trace context of the handled record."""
        cause = handling.get()
        if cause is None or outbound.envelope.traceparent is not None or outbound.headers:
            return await send(outbound)
        if not self._direct:
            return await send(inject(outbound))
        if cause.traceparent is not None:
            outbound = Outbound(
                outbound.topic,
                outbound.key,
                outbound.value,
                outbound.envelope.with_trace(cause.traceparent, cause.tracestate),
                outbound.event,
            )
        if otel_baggage.get_all():
            outbound = with_current_baggage(outbound)
        return await send(outbound)
