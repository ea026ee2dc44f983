"""inventory's handlers, in memory: reserve or reject, release on cancel, once per event."""

from __future__ import annotations

from pathlib import Path

from choreokit.services.example.contracts.inventory import (
    StockRejected,
    StockReleased,
    StockReserved,
)
from choreokit.services.example.contracts.orders import CancelReason, OrderCancelled
from choreokit.services.example.inventory.app import build
from choreokit.services.example.inventory.settings import InventorySettings
from choreokit.services.runtime.app import ServiceApp
from choreokit.testing import drive
from tests.unit.example.support import order, runtime

CATALOG = {"SKU-1": 5, "SKU-2": 1}


def inventory(tmp_path: Path) -> ServiceApp:
    return build(runtime("inventory", tmp_path), InventorySettings(catalog=CATALOG))[1]


async def test_an_order_in_stock_is_reserved_for_its_total(tmp_path: Path) -> None:
    async with drive(inventory(tmp_path)) as kit:
        handling = await kit.deliver(order("o-1", ("SKU-1", 2, 150), ("SKU-1", 1, 150)))
    reserved = handling.one(StockReserved)
    assert reserved.reservation_id == "res-o-1"
    assert [(line.sku, line.quantity) for line in reserved.lines] == [("SKU-1", 3)]
    assert reserved.amount_cents == 450
    assert handling.published[0].envelope.causation_id == handling.envelope.id  # type: ignore[union-attr]


async def test_a_short_line_rejects_the_whole_order_and_reserves_nothing(tmp_path: Path) -> None:
    async with drive(inventory(tmp_path)) as kit:
        rejected = (await kit.deliver(order("o-1", ("SKU-1", 1, 1), ("SKU-2", 2, 1)))).one(
            StockRejected
        )
        # The first line was not kept back: a second order gets all five.
        later = await kit.deliver(order("o-2", ("SKU-1", 5, 1)))
    assert (rejected.sku, rejected.requested, rejected.available) == ("SKU-2", 2, 1)
    assert later.one(StockReserved).order_id == "o-2"


async def test_cancelling_releases_the_reservation_once_however_often_delivered(
    tmp_path: Path,
) -> None:
    cancel = OrderCancelled(order_id="o-1", reason=CancelReason.PAYMENT_DECLINED, detail="")
    async with drive(inventory(tmp_path)) as kit:
        # One flow per order: the order id is bound to the flow that placed it.
        await kit.deliver(order("o-1", ("SKU-1", 5, 1)), correlation_id="flow-1")
        first = await kit.deliver(cancel, event_id="cancel-1", correlation_id="flow-1")
        again = await kit.deliver(cancel, event_id="cancel-1", correlation_id="flow-1")  # inbox
        after = await kit.deliver(order("o-2", ("SKU-1", 5, 1)))
    assert first.one(StockReleased).reservation_id == "res-o-1"
    assert again.published[0].envelope.id == first.published[0].envelope.id
    assert after.one(StockReserved).order_id == "o-2"  # the five are back, counted once


async def test_cancelling_an_order_never_reserved_releases_nothing(tmp_path: Path) -> None:
    cancel = OrderCancelled(order_id="o-9", reason=CancelReason.OUT_OF_STOCK, detail="")
    async with drive(inventory(tmp_path)) as kit:
        handling = await kit.deliver(cancel)
    assert handling.complete
    assert handling.published == ()
