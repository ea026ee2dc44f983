"""Tracing off, trace kept: pass an incoming trace context on to what the handler publishes."""

from __future__ import annotations

from choreokit.events import Delivery, Middleware, Outbound
from choreokit.tracing._context import handling
from choreokit.tracing._hooks import Next, Send, SendFuture


class TraceContextRelay(Middleware):
    """Carries ``traceparent``/``tracestate`` from a handled record to the events it causes.

    The middleware a service gets when tracing is off (no exporter endpoint, or
    ``OTEL_SDK_DISABLED=true``): it makes no spans and parses nothing, it only
    copies the two strings, so an untraced service in the middle of a flow does
    not break the trace. Downstream spans become children of the last traced
    producer, as if this hop were not there. Events published outside a handler
    start no trace.
    """

    async def on_delivery(self, delivery: Delivery, call_next: Next) -> None:
        """Remember the handled record's envelope while it is being handled."""
        token = handling.set(delivery.envelope)
        try:
            await call_next(delivery)
        finally:
            handling.reset(token)

    async def on_publish(self, outbound: Outbound, send: Send) -> SendFuture:
        """Give an event published while handling the trace context of the handled record."""
        cause = handling.get()
        if (
            cause is not None
            and cause.traceparent is not None
            and outbound.envelope.traceparent is None
        ):
            outbound = Outbound(
                outbound.topic,
                outbound.key,
                outbound.value,
                outbound.envelope.with_trace(cause.traceparent, cause.tracestate),
                outbound.event,
            )
        return await send(outbound)
