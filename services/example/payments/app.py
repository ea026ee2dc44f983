"""The payments service: authorize reserved orders, refund cancelled ones.

Payments reacts to ``stock.reserved`` only, so no payment is ever attempted
for an order whose stock is not reserved.
"""

from __future__ import annotations

from choreokit.events import HandlerContext, Service
from choreokit.events.sql import Inbox, bind_key, create_tables, transaction
from choreokit.services.example.contracts.inventory import StockReserved
from choreokit.services.example.contracts.orders import OrderCancelled
from choreokit.services.example.contracts.payments import (
    PaymentAuthorized,
    PaymentDeclined,
    PaymentRefunded,
)
from choreokit.services.example.payments import store
from choreokit.services.example.payments.settings import PaymentsSettings
from choreokit.services.runtime.app import Runtime, ServiceApp
from choreokit.services.runtime.database import create_engine

SETTINGS = (PaymentsSettings,)
"""The settings this service reads (besides the runtime's); the compose test checks them."""


def build(runtime: Runtime, settings: PaymentsSettings) -> tuple[Service, ServiceApp]:
    """Return the payments service and the app that runs it."""
    engine = create_engine(runtime.database_url(settings.db, "payments"))
    service = Service(
        runtime.name,
        settings=runtime.kafka,
        publishes=[PaymentAuthorized, PaymentDeclined, PaymentRefunded],
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
        payment_id = f"pay-{event.order_id}"
        declined = event.amount_cents > settings.credit_limit_cents
        await store.record(
            transaction(),
            payment_id=payment_id,
            order_id=event.order_id,
            correlation_id=ctx.correlation_id,
            amount_cents=event.amount_cents,
            currency=event.currency,
            status=store.DECLINED if declined else store.AUTHORIZED,
        )
        if declined:
            await ctx.publish(
                PaymentDeclined(
                    order_id=event.order_id,
                    reason=f"amount {event.amount_cents} exceeds the credit limit",
                )
            )
        else:
            await ctx.publish(
                PaymentAuthorized(
                    order_id=event.order_id,
                    payment_id=payment_id,
                    amount_cents=event.amount_cents,
                    currency=event.currency,
                )
            )

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

    app = ServiceApp(service, setup=[setup], teardown=[engine.dispose], on_ready=runtime.mark_ready)
    return service, app


def create(runtime: Runtime) -> ServiceApp:
    """Entry point of ``choreo run payments``."""
    return build(runtime, PaymentsSettings())[1]
