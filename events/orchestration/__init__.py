"""Orchestration inside one service (the hybrid pattern): steps, compensation, resumption.

A service that owns a multi-step process (quote, label, pickup) runs it here
and then publishes one completion event, so the rest of the system still sees
a choreography::

    shipment = Orchestration(
        "shipment",
        [Step("quote", get_quote), Step("label", buy_label, compensate=void_label)],
        engine=engine,
    )

    @shipping.handler(PaymentAuthorized)
    async def ship(event: PaymentAuthorized, ctx: HandlerContext) -> None:
        outcome = await shipment.run(ctx.envelope.id, {"order_id": event.order_id})
        await ctx.publish(ShipmentCompleted(...) if outcome.succeeded else ShipmentFailed(...))

Inside a handler, each run also publishes an ``orchestration.run`` event (its
steps, tries, compensations and timings) with the completion event, for the
saga observer; ``report=False`` turns that off.

See ``docs/orchestration.md``.
"""

from choreokit.events.extras import needs_extra as _needs_extra

with _needs_extra("sql", "choreokit.events.orchestration"):
    from choreokit.events.orchestration._orchestration import Delivery, Orchestration, Outcome
    from choreokit.events.orchestration._steps import Await, Step, StepContext, StepFailedError
    from choreokit.events.orchestration._store import RunStatus
    from choreokit.events.orchestration.events import OrchestrationRun, StepReport

__all__ = [
    "Await",
    "Delivery",
    "Orchestration",
    "OrchestrationRun",
    "Outcome",
    "RunStatus",
    "Step",
    "StepContext",
    "StepFailedError",
    "StepReport",
]
