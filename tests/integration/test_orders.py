"""The orders service on the real broker: orders placed by other systems are adopted and settled."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from choreokit.events import KafkaSettings, Service
from choreokit.services.example.contracts.orders import (
    Address,
    OrderConfirmed,
    OrderLine,
    OrderPlaced,
)
from choreokit.services.example.contracts.shipping import ShipmentCompleted
from choreokit.services.example.orders.app import build
from choreokit.services.example.orders.settings import OrdersSettings
from choreokit.services.runtime import free_port
from choreokit.services.runtime.app import Runtime
from tests.integration.kafka_io import all_records, headers_of
from tests.support import unique, wait_for


async def test_an_order_placed_elsewhere_is_adopted_and_confirmed(
    kafka: KafkaSettings, tmp_path: Path
) -> None:
    runtime = Runtime(name=unique("orders"), kafka=kafka, data_dir=tmp_path)
    _, app = build(runtime, OrdersSettings(port=free_port()))
    stop = asyncio.Event()
    running = asyncio.ensure_future(app.run(stop))
    order_id = unique("ext-")
    partner = Service(unique("partner"), settings=kafka, publishes=[OrderPlaced, ShipmentCompleted])

    def status() -> str | None:
        try:
            with sqlite3.connect(tmp_path / "orders.sqlite3") as db:
                row = db.execute(
                    "select status from orders where order_id = ?", (order_id,)
                ).fetchone()
        except sqlite3.OperationalError:
            return None
        return row[0] if row else None

    try:
        async with partner:
            placed = await partner.publish(
                OrderPlaced(
                    order_id=order_id,
                    customer_id="c-1",
                    lines=(OrderLine(sku="SKU-1", quantity=1, unit_price_cents=100),),
                    ship_to=Address(country="DE", postal_code="10115"),
                )
            )
            await wait_for(lambda: status() == "placed", what="the order to be adopted")
            await partner.publish(
                ShipmentCompleted(
                    order_id=order_id,
                    shipment_id="s-1",
                    carrier="c",
                    tracking_number="T-1",
                    price_cents=1,
                ),
                correlation_id=placed.correlation_id,
                causation_id=placed.id,
            )
            await wait_for(lambda: status() == "confirmed", what="the order to be confirmed")
    finally:
        stop.set()
        await running
    confirmations = [
        r
        for r in await all_records(kafka.bootstrap, "orders")
        if headers_of(r).get("ce_type") == OrderConfirmed.event_info().type
        and order_id.encode() in r.value
    ]
    assert len(confirmations) == 1
    assert headers_of(confirmations[0])["ce_correlationid"] == placed.correlation_id
