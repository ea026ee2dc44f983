"""The middleware base: one object per concern, hooking any of three points."""

from __future__ import annotations

from choreokit.events._handling import Delivery, Next
from choreokit.events._outbound import Outbound, Send, SendFuture


class Middleware:
    """Base class for a concern that wraps handling and publishing.

    Override any of the three hooks; the ones left alone cost nothing, because
    the service only chains overridden hooks. A middleware holds no global
    state: whatever it needs (a tracer, a database) is given to its constructor.

    * :meth:`on_delivery` runs once per record, around the retries and around the
      sending of what the handler published (tracing, logging context).
    * :meth:`on_attempt` runs around each try of the handler (a database
      transaction, an inbox). Events the handler published are in
      ``delivery.outputs`` when ``call_next`` returns.
    * :meth:`on_publish` runs around every send (trace context injection).
    """

    async def on_delivery(self, delivery: Delivery, call_next: Next) -> None:
        """Wrap the whole handling of one record."""
        await call_next(delivery)

    async def on_attempt(self, delivery: Delivery, call_next: Next) -> None:
        """Wrap one try of the handler."""
        await call_next(delivery)

    async def on_publish(self, outbound: Outbound, send: Send) -> SendFuture:
        """Wrap the sending of one record."""
        return await send(outbound)


def overrides(middleware: Middleware, hook: str) -> bool:
    """Return whether ``middleware`` overrides ``hook`` of :class:`Middleware`."""
    return getattr(type(middleware), hook) is not getattr(Middleware, hook)
