"""The shipping service: the hybrid pattern.

Inside, it orchestrates quote -> label -> pickup against the carrier, with
timeouts, retries and compensation, resumable after a crash. Outside, the
system sees one completion event per order: ``shipment.completed`` or
``shipment.failed``.
"""

from __future__ import annotations

from typing import Any

from choreokit.events import HandlerContext, RetryPolicy, Service
from choreokit.events.orchestration import Orchestration, OrchestrationRun, Step, StepContext
from choreokit.events.sql import Inbox, Join, Joined, KeyBindings
from choreokit.services.example.contracts.orders import OrderPlaced
from choreokit.services.example.contracts.payments import PaymentAuthorized
from choreokit.services.example.contracts.shipping import ShipmentCompleted, ShipmentFailed
from choreokit.services.example.shipping.carrier import SimulatedCarrier
from choreokit.services.example.shipping.settings import ShippingSettings
from choreokit.services.runtime.app import Runtime, ServiceApp
from choreokit.services.runtime.database import create_engine

ORCHESTRATION = "shipment"


def shipment_steps(carrier: SimulatedCarrier, settings: ShippingSettings) -> list[Step]:
    """Quote, label (voided on failure), pickup (cancelled on failure)."""
    retry = RetryPolicy(max_attempts=settings.step_attempts, first_backoff=settings.step_backoff)

    async def quote(ctx: StepContext) -> Any:
        return await carrier.quote(
            ctx.idempotency_key, order_id=ctx.input["order_id"], country=ctx.input["country"]
        )

    async def label(ctx: StepContext) -> Any:
        return await carrier.create_label(ctx.idempotency_key, order_id=ctx.input["order_id"])

    async def void(_ctx: StepContext, result: Any) -> None:
        await carrier.void_label(result["label_id"])

    async def pickup(ctx: StepContext) -> Any:
        return await carrier.book_pickup(
            ctx.idempotency_key,
            label_id=ctx.results["label"]["label_id"],
            postal_code=ctx.input["postal_code"],
        )

    async def cancel(_ctx: StepContext, result: Any) -> None:
        await carrier.cancel_pickup(result["pickup_id"])

    timeout = settings.step_timeout
    return [
        Step("quote", quote, timeout=timeout, retry=retry),
        Step("label", label, compensate=void, timeout=timeout, retry=retry),
        Step("pickup", pickup, compensate=cancel, timeout=timeout, retry=retry),
    ]


SETTINGS = (ShippingSettings,)
"""The settings this service reads (besides the runtime's); the compose test checks them."""


def build(runtime: Runtime, settings: ShippingSettings) -> tuple[Service, ServiceApp]:
    """Return the shipping service and the app that runs it."""
    engine = create_engine(runtime.database_url(settings.db, "shipping"))
    carrier_engine = create_engine(runtime.database_url(settings.carrier_db, "carrier"))
    carrier = SimulatedCarrier(
        carrier_engine, latency=settings.carrier_latency, failure_rate=settings.carrier_failure_rate
    )
    shipment = Orchestration(
        ORCHESTRATION,
        shipment_steps(carrier, settings),
        engine=engine,
        report=settings.report_steps,
    )
    service = Service(
        runtime.name,
        settings=runtime.kafka,
        publishes=[ShipmentCompleted, ShipmentFailed, OrchestrationRun],
    )
    runtime.prepare(service)
    # The handlers write in short transactions of their own (the orchestration records
    # each step), so shipments may run side by side even on SQLite.
    service.use(Inbox(engine, consumer=service.name, serialize=False))
    bindings = KeyBindings(consumer=service.name)

    async def bind(event: OrderPlaced | PaymentAuthorized, ctx: HandlerContext) -> None:
        # A short transaction of its own, like every write here (see the Inbox above).
        async with engine.begin() as conn:
            await bindings.bind(conn, "order", event.order_id, ctx.correlation_id)

    def unshipped(event: PaymentAuthorized, error: BaseException) -> ShipmentFailed:
        # A shipment this service gave up on fails, so the payment is refunded.
        return ShipmentFailed(
            order_id=event.order_id,
            failed_step="shipment",
            reason=f"{type(error).__name__}: the shipment could not be handled",
        )

    async def ship(joined: Joined) -> ShipmentCompleted | ShipmentFailed:
        """Both the destination and the payment are here: run the shipment, once."""
        order_id = joined.key
        destination = joined.get(OrderPlaced).ship_to
        outcome = await shipment.run(
            order_id,
            {
                "order_id": order_id,
                "country": destination.country,
                "postal_code": destination.postal_code,
            },
        )
        if outcome.succeeded:
            quote, label = outcome.results["quote"], outcome.results["label"]
            return ShipmentCompleted(
                order_id=order_id,
                shipment_id=f"shp-{order_id}",
                carrier=quote["carrier"],
                tracking_number=label["tracking_number"],
                price_cents=quote["price_cents"],
            )
        return ShipmentFailed(
            order_id=order_id,
            failed_step=outcome.failed_step or "?",
            reason=(outcome.error or "")[:1024],
            compensated_steps=outcome.compensated,
        )

    # The order's destination and its authorized payment travel on different topics in
    # no guaranteed order: the join waits for both, and whichever completes it ships.
    ready = Join(
        service,
        ORCHESTRATION,
        inputs=[OrderPlaced, PaymentAuthorized],
        key="order_id",
        engine=engine,
        output=ship,
        on_input=bind,
        on_dead_letter={PaymentAuthorized: unshipped},
    )

    async def setup() -> None:
        await ready.create_tables()
        await shipment.create_tables()
        await carrier.create_tables()

    app = ServiceApp(
        service,
        setup=[setup],
        teardown=[engine.dispose, carrier_engine.dispose],
        on_ready=runtime.mark_ready,
    )
    return service, app


def create(runtime: Runtime) -> ServiceApp:
    """Entry point of ``choreo run shipping``."""
    return build(runtime, ShippingSettings())[1]
