"""A running observer judges by a spec file changed under it, without a restart: a flow that
stopped at its reservation is running, until the file makes the reservation a success end; then
the same flow is completed, and the API shows the new spec."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

from choreokit.events import KafkaSettings, Service
from choreokit.services.example.contracts.inventory import ReservedLine, StockReserved
from choreokit.services.example.contracts.orders import OrderPlaced
from tests import observer_fixtures
from tests.integration.test_observer_ingest import an_order
from tests.observer_fixtures import running_observer

private_broker = observer_fixtures.private_broker
private_kafka = observer_fixtures.private_kafka

SPEC = """\
name: order
start: order.placed
success: [{success}]
failure: [order.cancelled]
steps:
  order.placed: [stock.reserved, stock.rejected]
timeout: 1h
"""


async def test_a_changed_spec_file_is_judged_by_without_a_restart(
    private_kafka: KafkaSettings, tmp_path: Path
) -> None:
    spec_file = tmp_path / "sagas.yaml"
    spec_file.write_text(SPEC.format(success="order.confirmed"))
    db = f"sqlite:///{tmp_path / 'observer.sqlite3'}"
    orders = Service("orders", settings=private_kafka, publishes=[OrderPlaced])
    inventory = Service("inventory", settings=private_kafka, publishes=[StockReserved])
    overrides: dict[str, Any] = {
        "specs": (spec_file,),
        "sweep_interval": timedelta(milliseconds=200),
    }
    async with running_observer(private_kafka, db, tmp_path, **overrides) as observer:
        async with orders, inventory:
            placed = await orders.publish(an_order("o-1"))
            await inventory.publish(
                StockReserved(
                    order_id="o-1",
                    reservation_id="r-1",
                    lines=(ReservedLine(sku="SKU-1", quantity=1),),
                    amount_cents=990,
                ),
                correlation_id=placed.correlation_id,
                causation_id=placed.id,
            )
        path = f"/api/flows/{placed.correlation_id}"
        await observer.wait(
            "the flow running",
            lambda f: f["status"] == "running" and f["event_count"] == 2,
            path=path,
        )
        spec_file.write_text(SPEC.format(success="stock.reserved"))
        stamp = spec_file.stat().st_mtime_ns + 1_000_000_000  # a later mtime, whatever the clock
        os.utime(spec_file, ns=(stamp, stamp))
        judged = await observer.wait(
            "the new judgement", lambda f: f["status"] == "completed", path=path
        )
        assert judged["end_type"] == "stock.reserved"
        assert judged["spec"]["success"] == ["stock.reserved"]
