"""The orders service: takes orders over HTTP, and settles them as the flow reports back.

An order is recorded and its ``order.placed`` staged in one transaction (the
transactional outbox), so an order is published if and only if it is
recorded. It ends ``confirmed`` on ``shipment.completed``, or ``cancelled`` on
``stock.rejected``, ``payment.declined`` or ``shipment.failed``; cancellation
is what inventory and payments compensate on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from functools import partial

from choreokit.events import Event, HandlerContext, Profile, Service
from choreokit.events.sql import Inbox, Outbox, OutboxRelay, bind_key, create_tables, transaction
from choreokit.services.example.contracts.inventory import StockRejected
from choreokit.services.example.contracts.orders import (
    CancelReason,
    OrderCancelled,
    OrderConfirmed,
    OrderPlaced,
    OrderPlacedV1,
)
from choreokit.services.example.contracts.payments import PaymentDeclined
from choreokit.services.example.contracts.shipping import ShipmentCompleted, ShipmentFailed
from choreokit.services.example.orders import store
from choreokit.services.example.orders.api import create_api
from choreokit.services.example.orders.settings import OrdersSettings, check_production
from choreokit.services.runtime.app import Runtime, ServiceApp
from choreokit.services.runtime.database import create_engine
from choreokit.services.runtime.http import serve

logger = logging.getLogger("choreokit.orders")


SETTINGS = (OrdersSettings,)
"""The settings this service reads (besides the runtime's); the compose test checks them."""


def build(runtime: Runtime, settings: OrdersSettings) -> tuple[Service, ServiceApp]:
    """Return the orders service and the app that runs it (consumer, relay, HTTP intake).

    Raises:
        ConfigurationError: With ``CHOREO_PROFILE=production``, an intake that is not safe
            to run (see :func:`check_production`).
    """
    if runtime.kafka.profile is Profile.PRODUCTION:
        check_production(settings)
    engine = create_engine(runtime.database_url(settings.db, "orders"))
    service = Service(
        runtime.name,
        settings=runtime.kafka,
        publishes=[OrderPlaced, OrderPlacedV1, OrderConfirmed, OrderCancelled],
    )
    runtime.prepare(service)
    service.use(Inbox(engine, consumer=service.name))
    outbox = Outbox(engine, producer=service.name)

    async def cancel(ctx: HandlerContext, order_id: str, reason: CancelReason, detail: str) -> None:
        await bind_key("order", order_id)
        if await store.settle(transaction(), order_id, store.CANCELLED, reason=reason.value):
            await ctx.publish(OrderCancelled(order_id=order_id, reason=reason, detail=detail))
        else:
            logger.warning("order %s is unknown or already settled; not cancelling", order_id)

    def cancelled(reason: CancelReason) -> Callable[[Event, BaseException], OrderCancelled]:
        # A settling step this service gave up on still ends its flow: cancelled, so
        # inventory and payments compensate what the flow holds.
        def build(event: Event, error: BaseException) -> OrderCancelled:
            order_id = getattr(event, "order_id", "?")
            detail = f"{type(error).__name__}: the order could not be settled"
            return OrderCancelled(order_id=order_id, reason=reason, detail=detail)

        return build

    @service.handler(OrderPlaced)
    async def placed(event: OrderPlaced, ctx: HandlerContext) -> None:
        """Adopt orders placed by other systems (the gateway, Kafka clients elsewhere).

        Orders placed through the intake are recorded already; this is a no-op for them.
        An order id already bound to another flow is refused (dead-lettered).
        """
        await bind_key("order", event.order_id)
        adopted = await store.adopt(
            transaction(),
            order_id=event.order_id,
            correlation_id=ctx.correlation_id,
            event_id=ctx.envelope.id,
            request=event.model_dump_json(),
            customer_id=event.customer_id,
            total_cents=event.total_cents,
        )
        if adopted:
            logger.info("adopted order %s placed by %s", event.order_id, ctx.envelope.source)

    @service.handler(StockRejected, on_dead_letter=cancelled(CancelReason.OUT_OF_STOCK))
    async def out_of_stock(event: StockRejected, ctx: HandlerContext) -> None:
        """Cancel: not enough stock."""
        detail = f"{event.sku}: {event.requested} requested, {event.available} available"
        await cancel(ctx, event.order_id, CancelReason.OUT_OF_STOCK, detail)

    @service.handler(PaymentDeclined, on_dead_letter=cancelled(CancelReason.PAYMENT_DECLINED))
    async def declined(event: PaymentDeclined, ctx: HandlerContext) -> None:
        """Cancel: the payment was declined (inventory releases the stock)."""
        await cancel(ctx, event.order_id, CancelReason.PAYMENT_DECLINED, event.reason)

    @service.handler(ShipmentFailed, on_dead_letter=cancelled(CancelReason.SHIPPING_FAILED))
    async def not_shipped(event: ShipmentFailed, ctx: HandlerContext) -> None:
        """Cancel: shipping failed (inventory releases, payments refunds)."""
        await cancel(ctx, event.order_id, CancelReason.SHIPPING_FAILED, event.reason)

    @service.handler(ShipmentCompleted, on_dead_letter=cancelled(CancelReason.SHIPPING_FAILED))
    async def shipped(event: ShipmentCompleted, ctx: HandlerContext) -> None:
        """Confirm: paid for and on its way."""
        await bind_key("order", event.order_id)
        if await store.settle(
            transaction(),
            event.order_id,
            store.CONFIRMED,
            tracking_number=event.tracking_number,
        ):
            await ctx.publish(
                OrderConfirmed(order_id=event.order_id, tracking_number=event.tracking_number)
            )

    up = asyncio.Event()
    api = create_api(
        settings,
        outbox=outbox,
        publisher=lambda: service.publisher,
        ready=lambda: up.is_set() and service.healthy(),
        registry=runtime.prometheus_registry(),
    )

    async def setup() -> None:
        await create_tables(engine)
        await store.create(engine)

    async def relay(stop: asyncio.Event) -> None:
        await OutboxRelay(outbox, service.publisher).run(stop)

    def ready() -> None:
        up.set()
        runtime.mark_ready()

    app = ServiceApp(
        service,
        setup=[setup],
        tasks=[relay, partial(serve, api, host=settings.host, port=settings.port)],
        teardown=[engine.dispose],
        on_ready=ready,
        serves_http=True,
    )
    return service, app


def create(runtime: Runtime) -> ServiceApp:
    """Entry point of ``choreo run orders``."""
    return build(runtime, OrdersSettings())[1]
