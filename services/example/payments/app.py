"""The payments service: authorize reserved orders, refund cancelled ones.

Payments reacts to ``stock.reserved`` only, so no payment is ever attempted
for an order whose stock is not reserved. An order above
``CHOREO_ORDERS_APPROVAL_ABOVE_CENTS`` waits for a person first: payments
publishes ``approval.requested`` and waits durably (an orchestration's
:class:`Await` step, in its own database) for ``approval.granted`` (then it
authorizes) or ``approval.rejected`` (then it declines, and the order is
cancelled and its stock released). A decision that arrives before that wait is
recorded is kept by the orchestration and applied when the reservation arrives.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from choreokit.events import (
    ApprovalGranted,
    ApprovalRejected,
    ApprovalRequested,
    HandlerContext,
    Service,
)
from choreokit.events.orchestration import Await, Orchestration
from choreokit.events.sql import Inbox, bind_key, create_tables, transaction
from choreokit.services.example.contracts.inventory import StockReserved
from choreokit.services.example.contracts.orders import OrderCancelled
from choreokit.services.example.contracts.payments import (
    PaymentAuthorized,
    PaymentDeclined,
    PaymentRefunded,
)
from choreokit.services.example.contracts.saga import PAYMENT_APPROVAL
from choreokit.services.example.payments import store
from choreokit.services.example.payments.settings import PaymentsSettings
from choreokit.services.runtime.app import Runtime, ServiceApp
from choreokit.services.runtime.database import create_engine

logger = logging.getLogger("choreokit.example.payments")

SETTINGS = (PaymentsSettings,)
"""The settings this service reads (besides the runtime's); the compose test checks them."""


def build(runtime: Runtime, settings: PaymentsSettings) -> tuple[Service, ServiceApp]:
    """Return the payments service and the app that runs it."""
    engine = create_engine(runtime.database_url(settings.db, "payments"))
    # The waits for approval live apart from the inbox's database: they are written in
    # transactions of their own while the handler's inbox transaction is open.
    waits = create_engine(runtime.database_url(settings.approvals_db, "payments-approvals"))
    approval = Orchestration(
        "payment-approval",
        [Await("approval", types=PAYMENT_APPROVAL.decisions)],
        engine=waits,
    )
    service = Service(
        runtime.name,
        settings=runtime.kafka,
        publishes=[PaymentAuthorized, PaymentDeclined, PaymentRefunded, ApprovalRequested],
    )
    runtime.prepare(service)
    service.use(Inbox(engine, consumer=service.name))

    def undecided(event: StockReserved, error: BaseException) -> PaymentDeclined:
        # A payment this service gave up on is declined, so the reservation is released
        # instead of holding the stock for ever.
        return PaymentDeclined(
            order_id=event.order_id,
            reason=f"{type(error).__name__}: the payment could not be decided",
        )

    @service.handler(StockReserved, on_dead_letter=undecided)
    async def authorize(event: StockReserved, ctx: HandlerContext) -> None:
        """Authorize the reserved order's amount, or decline it above the credit limit."""
        await bind_key("order", event.order_id)
        declined = event.amount_cents > settings.credit_limit_cents
        above = settings.approval_above_cents
        if not declined and above is not None and event.amount_cents > above:
            outcome = await approval.run(
                ctx.correlation_id,
                {
                    "order_id": event.order_id,
                    "amount_cents": event.amount_cents,
                    "currency": event.currency,
                },
            )
            if outcome.waiting:  # a redelivery publishes the same request (same id)
                await ctx.publish(
                    ApprovalRequested(
                        flow=ctx.correlation_id,
                        step=PAYMENT_APPROVAL.step,
                        summary=f"order {event.order_id}: {event.amount_cents} cents "
                        f"{event.currency}, above {above}",
                        roles=PAYMENT_APPROVAL.roles,
                    )
                )
                return
            early = outcome.results.get("approval")
            if isinstance(early, dict) and early.get("held"):
                # The decision came before this wait was recorded; it ended the wait at
                # once, so it is applied here (in this handler's transaction).
                decision = early["event"]
                await _apply(
                    ctx,
                    outcome.input,
                    granted=bool(decision["granted"]),
                    actor=str(decision["actor"]),
                    by_deadline=bool(decision["by_deadline"]),
                    reason=str(decision.get("reason", "")),
                )
            return
        await _decide(ctx, event.order_id, event.amount_cents, event.currency, declined=declined)

    _await_approvals(service, approval)

    @service.handler(OrderCancelled)
    async def refund(event: OrderCancelled, ctx: HandlerContext) -> None:
        """Refund an authorized payment of a cancelled order (compensation)."""
        await bind_key("order", event.order_id)
        refunded = await store.refund(transaction(), event.order_id)
        if refunded is not None:
            await ctx.publish(
                PaymentRefunded(
                    order_id=event.order_id,
                    payment_id=refunded.payment_id,
                    amount_cents=refunded.amount_cents,
                )
            )

    async def setup() -> None:
        await create_tables(engine)
        await store.create(engine)
        await approval.create_tables()

    app = ServiceApp(
        service,
        setup=[setup],
        teardown=[engine.dispose, waits.dispose],
        on_ready=runtime.mark_ready,
    )
    return service, app


def create(runtime: Runtime) -> ServiceApp:
    """Entry point of ``choreo run payments``."""
    return build(runtime, PaymentsSettings())[1]


async def _decide(
    ctx: HandlerContext, order_id: str, amount_cents: int, currency: str, *, declined: bool
) -> None:
    payment_id = f"pay-{order_id}"
    await store.record(
        transaction(),
        payment_id=payment_id,
        order_id=order_id,
        correlation_id=ctx.correlation_id,
        amount_cents=amount_cents,
        currency=currency,
        status=store.DECLINED if declined else store.AUTHORIZED,
    )
    if declined:
        await ctx.publish(
            PaymentDeclined(
                order_id=order_id,
                reason=f"amount {amount_cents} exceeds the credit limit",
            )
        )
    else:
        await ctx.publish(
            PaymentAuthorized(
                order_id=order_id,
                payment_id=payment_id,
                amount_cents=amount_cents,
                currency=currency,
            )
        )


def _await_approvals(service: Service, approval: Orchestration) -> None:
    """Handle the decisions that end a flow's wait for approval."""

    async def decided(
        event: ApprovalGranted | ApprovalRejected, ctx: HandlerContext, *, granted: bool
    ) -> None:
        """End the flow's wait for approval: exactly the first decision counts."""
        if event.step != PAYMENT_APPROVAL.step:
            return
        delivery = await approval.deliver(
            ctx.correlation_id,
            "approval",
            {
                "granted": granted,
                "actor": event.actor,
                "by_deadline": event.by_deadline,
                "reason": event.reason,
            },
            delivery_id=ctx.envelope.id,
        )
        if delivery.held:
            logger.info(
                "a decision for flow %s at %s came before its wait: kept until payments waits",
                ctx.correlation_id,
                event.step,
            )
            return
        if not delivery.accepted or delivery.outcome is None:
            logger.info(
                "a decision for flow %s at %s changes nothing (decided before)",
                ctx.correlation_id,
                event.step,
            )
            return
        if (held := delivery.outcome.results.get("approval")) and held.get("held"):
            return  # it came early; the flow's stock.reserved handling applied it
        await _apply(
            ctx,
            delivery.outcome.input,
            granted=granted,
            actor=event.actor,
            by_deadline=event.by_deadline,
            reason=event.reason,
        )

    @service.handler(ApprovalGranted)
    async def approved(event: ApprovalGranted, ctx: HandlerContext) -> None:
        """Take the payment of an order a person approved."""
        await decided(event, ctx, granted=True)

    @service.handler(ApprovalRejected)
    async def rejected(event: ApprovalRejected, ctx: HandlerContext) -> None:
        """Decline the payment of an order a person rejected (the order is then cancelled)."""
        await decided(event, ctx, granted=False)


async def _apply(
    ctx: HandlerContext,
    run: Mapping[str, Any],
    *,
    granted: bool,
    actor: str,
    by_deadline: bool,
    reason: str,
) -> None:
    """Authorize (granted) or decline (rejected) the payment of an approval run's order."""
    order_id = str(run["order_id"])
    await bind_key("order", order_id)
    if granted:
        await _decide(ctx, order_id, int(run["amount_cents"]), str(run["currency"]), declined=False)
        return
    await store.record(
        transaction(),
        payment_id=f"pay-{order_id}",
        order_id=order_id,
        correlation_id=ctx.correlation_id,
        amount_cents=int(run["amount_cents"]),
        currency=str(run["currency"]),
        status=store.DECLINED,
    )
    who = "the approval deadline" if by_deadline else actor
    await ctx.publish(
        PaymentDeclined(order_id=order_id, reason=f"rejected by {who}: {reason}"[:500])
    )
