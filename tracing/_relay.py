"""Tracing off, trace kept: pass an incoming trace context on to what the handler publishes."""

from __future__ import annotations

from opentelemetry import context as otel_context

from choreokit.events import Delivery, Middleware, Outbound
from choreokit.tracing._context import handling
from choreokit.tracing._hooks import Next, Send, SendFuture
from choreokit.tracing._propagation import extract, inject


class TraceContextRelay(Middleware):
    """Carries a handled record's trace context and baggage to the events it causes.

    The middleware a service gets when tracing is off (no exporter endpoint, or
    ``OTEL_SDK_DISABLED=true``): it makes no spans, it only passes the context
    on, so an untraced service in the middle of a flow does not break the
    trace. Downstream spans become children of the last traced producer, as if
    this hop were not there. Events published outside a handler start no trace.

    The context is read and written by the configured propagators
    (``OTEL_PROPAGATORS``), so b3 or W3C baggage pass through as well as W3C
    trace context. (Unlike the tracing middleware it has no direct W3C path:
    ``bench/hop.py`` shows no difference for it.)
    """

    async def on_delivery(self, delivery: Delivery, call_next: Next) -> None:
        """Make the handled record's context current while it is being handled."""
        attached = otel_context.attach(extract(delivery.record.headers))
        token = handling.set(delivery.envelope)
        try:
            await call_next(delivery)
        finally:
            handling.reset(token)
            otel_context.detach(attached)

    async def on_publish(self, outbound: Outbound, send: Send) -> SendFuture:
        """Give an event published while handling the trace context of the handled record."""
        if handling.get() is None or outbound.envelope.traceparent is not None:
            return await send(outbound)
        return await send(inject(outbound))
