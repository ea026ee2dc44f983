"""shipping's handlers, in memory: ship once both the order and its payment are known."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from choreokit.services.example.contracts.payments import PaymentAuthorized
from choreokit.services.example.contracts.shipping import (
    UNSERVED_PREFIX,
    ShipmentCompleted,
    ShipmentFailed,
)
from choreokit.services.example.shipping.app import build
from choreokit.services.example.shipping.settings import ShippingSettings
from choreokit.testing import drive
from tests.unit.example.support import order, runtime

RELIABLE = ShippingSettings(carrier_latency=timedelta(0), carrier_failure_rate=0.0)


def authorized(order_id: str) -> PaymentAuthorized:
    return PaymentAuthorized(order_id=order_id, payment_id=f"pay-{order_id}", amount_cents=100)


async def test_order_then_payment_ships_once_caused_by_the_payment(tmp_path: Path) -> None:
    async with drive(build(runtime("shipping", tmp_path), RELIABLE)[1]) as kit:
        placed = await kit.deliver(order("o-1", ("SKU-1", 1, 100)), correlation_id="flow-1")
        paid = await kit.deliver(authorized("o-1"), correlation_id="flow-1")
    assert placed.published == ()  # waiting for the payment
    completed = paid.one(ShipmentCompleted)
    assert completed.shipment_id == "shp-o-1"
    assert completed.tracking_number
    envelope = paid.published[0].envelope
    assert (paid.envelope, placed.envelope) != (None, None)
    assert envelope.causation_id == paid.envelope.id  # type: ignore[union-attr]
    assert envelope.joined_ids == (placed.envelope.id,)  # type: ignore[union-attr]


async def test_payment_before_the_order_is_caused_by_the_order_and_joins_the_payment(
    tmp_path: Path,
) -> None:
    """The join's output names the completing input as its cause, the other in ce_joined."""
    async with drive(build(runtime("shipping", tmp_path), RELIABLE)[1]) as kit:
        paid = await kit.deliver(authorized("o-1"), correlation_id="flow-1")
        placed = await kit.deliver(order("o-1", ("SKU-1", 1, 100)), correlation_id="flow-1")
        again = await kit.deliver(authorized("o-1"), correlation_id="flow-1")
    assert paid.published == ()
    placed.one(ShipmentCompleted)
    envelope = placed.published[0].envelope
    assert envelope.causation_id == placed.envelope.id  # type: ignore[union-attr]
    assert envelope.joined_ids == (paid.envelope.id,)  # type: ignore[union-attr]
    assert again.published == ()  # another payment event finds the shipment claimed


async def test_an_unserved_destination_fails_at_pickup_and_voids_the_label(tmp_path: Path) -> None:
    async with drive(build(runtime("shipping", tmp_path), RELIABLE)[1]) as kit:
        await kit.deliver(
            order("o-1", ("SKU-1", 1, 100), postal_code=f"{UNSERVED_PREFIX}123"),
            correlation_id="flow-1",
        )
        paid = await kit.deliver(authorized("o-1"), correlation_id="flow-1")
    failed = paid.one(ShipmentFailed)
    assert failed.failed_step == "pickup"
    assert failed.compensated_steps == ("label",)
