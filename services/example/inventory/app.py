"""The inventory service: reserve stock for placed orders, release it for cancelled ones."""

from __future__ import annotations

from collections import Counter

from choreokit.events import HandlerContext, Service
from choreokit.events.sql import Inbox, bind_key, create_tables, transaction
from choreokit.services.example.contracts.inventory import (
    ReservedLine,
    StockRejected,
    StockReleased,
    StockReserved,
)
from choreokit.services.example.contracts.orders import OrderCancelled, OrderPlaced
from choreokit.services.example.inventory import store
from choreokit.services.example.inventory.settings import InventorySettings
from choreokit.services.runtime.app import Runtime, ServiceApp
from choreokit.services.runtime.database import create_engine

SETTINGS = (InventorySettings,)
"""The settings this service reads (besides the runtime's); the compose test checks them."""


def build(runtime: Runtime, settings: InventorySettings) -> tuple[Service, ServiceApp]:
    """Return the inventory service and the app that runs it."""
    engine = create_engine(runtime.database_url(settings.db, "inventory"))
    service = Service(
        runtime.name,
        settings=runtime.kafka,
        publishes=[StockReserved, StockRejected, StockReleased],
    )
    runtime.prepare(service)
    service.use(Inbox(engine, consumer=service.name))

    def unreserved(event: OrderPlaced, error: BaseException) -> StockRejected:
        # Nothing was reserved for an order this service gave up on: say so, so the
        # order is cancelled instead of waiting for ever.
        first = event.lines[0]
        return StockRejected(
            order_id=event.order_id,
            sku=first.sku,
            requested=first.quantity,
            available=0,
            reason=f"{type(error).__name__}: the order could not be reserved",
        )

    @service.handler(OrderPlaced, on_dead_letter=unreserved)
    async def reserve(event: OrderPlaced, ctx: HandlerContext) -> None:
        """Reserve every line of the order, or reject it naming the first short SKU."""
        await bind_key("order", event.order_id)
        wanted: Counter[str] = Counter()
        for line in event.lines:
            wanted[line.sku] += line.quantity
        reservation_id = f"res-{event.order_id}"
        shortage = await store.reserve(
            transaction(),
            reservation_id=reservation_id,
            order_id=event.order_id,
            correlation_id=ctx.correlation_id,
            lines=wanted,
        )
        if shortage is not None:
            await ctx.publish(
                StockRejected(
                    order_id=event.order_id,
                    sku=shortage.sku,
                    requested=shortage.requested,
                    available=shortage.available,
                )
            )
            return
        await ctx.publish(
            StockReserved(
                order_id=event.order_id,
                reservation_id=reservation_id,
                lines=tuple(ReservedLine(sku=s, quantity=q) for s, q in sorted(wanted.items())),
                amount_cents=event.total_cents,
                currency=event.currency,
            )
        )

    @service.handler(OrderCancelled)
    async def release(event: OrderCancelled, ctx: HandlerContext) -> None:
        """Give back what the order had reserved (compensation); nothing if it had none."""
        await bind_key("order", event.order_id)
        reservation_id = await store.release(transaction(), event.order_id)
        if reservation_id is not None:
            await ctx.publish(StockReleased(order_id=event.order_id, reservation_id=reservation_id))

    async def setup() -> None:
        await create_tables(engine)
        await store.create(engine, settings.catalog)

    app = ServiceApp(service, setup=[setup], teardown=[engine.dispose], on_ready=runtime.mark_ready)
    return service, app


def create(runtime: Runtime) -> ServiceApp:
    """Entry point of ``choreo run inventory``."""
    return build(runtime, InventorySettings())[1]
