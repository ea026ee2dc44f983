"""shipping's handlers, in memory: ship once both the order and its payment are known."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from choreokit.events.orchestration import OrchestrationRun
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
    envelope = next(p for p in paid.published if p.type == "shipment.completed").envelope
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
    envelope = next(p for p in placed.published if p.type == "shipment.completed").envelope
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


async def test_each_run_reports_its_steps_with_the_completion_event(tmp_path: Path) -> None:
    """orchestration.run: step names, tries, statuses, timings; cause and flow as the completion."""
    flaky = ShippingSettings(carrier_latency=timedelta(0), carrier_failure_rate=1.0)
    async with drive(build(runtime("shipping", tmp_path), flaky)[1]) as kit:
        await kit.deliver(order("o-1", ("SKU-1", 1, 100)), correlation_id="flow-1")
        paid = await kit.deliver(authorized("o-1"), correlation_id="flow-1")
    report = paid.one(OrchestrationRun)
    completed = next(p for p in paid.published if p.type == "shipment.completed")
    sent = next(p for p in paid.published if p.type == "orchestration.run")
    assert sent.topic == "orchestrations"
    assert sent.envelope.correlation_id == completed.envelope.correlation_id == "flow-1"
    assert sent.envelope.causation_id == completed.envelope.causation_id == paid.envelope.id  # type: ignore[union-attr]
    assert (report.orchestration, report.run_id, report.status) == ("shipment", "o-1", "succeeded")
    assert [s.name for s in report.steps] == ["quote", "label", "pickup"]
    assert {s.status for s in report.steps} == {"done"}
    # Every carrier call fails transiently at first (failure rate 1): each step was retried.
    assert all(s.attempts > 1 and s.error_type for s in report.steps), report.steps
    assert all(s.duration_ms is not None for s in report.steps)
    assert report.duration_ms >= 0
    assert report.ended_at >= report.started_at
    # Names, counts and types only: nothing the steps took or returned.
    text = (sent.record.value or b"").decode()
    assert completed.event.tracking_number not in text  # type: ignore[attr-defined]
    assert "10115" not in text


async def test_a_failed_run_reports_the_failure_and_the_compensation(tmp_path: Path) -> None:
    async with drive(build(runtime("shipping", tmp_path), RELIABLE)[1]) as kit:
        await kit.deliver(
            order("o-1", ("SKU-1", 1, 100), postal_code=f"{UNSERVED_PREFIX}123"),
            correlation_id="flow-1",
        )
        paid = await kit.deliver(authorized("o-1"), correlation_id="flow-1")
    report = paid.one(OrchestrationRun)
    assert report.status == "compensated"
    assert report.failed_step == "pickup"
    assert report.error_type
    steps = {s.name: s for s in report.steps}
    assert steps["quote"].status == "done"
    assert steps["label"].status == "compensated"
    assert steps["label"].compensation_attempts == 1
    assert steps["label"].compensation_ms is not None
    assert steps["pickup"].status == "failed"
    assert steps["pickup"].error_type == report.error_type
    assert f"{UNSERVED_PREFIX}123" not in (paid.published[0].record.value or b"").decode()


async def test_reporting_is_a_setting(tmp_path: Path) -> None:
    quiet = RELIABLE.model_copy(update={"report_steps": False})
    async with drive(build(runtime("shipping", tmp_path), quiet)[1]) as kit:
        await kit.deliver(order("o-1", ("SKU-1", 1, 100)), correlation_id="flow-1")
        paid = await kit.deliver(authorized("o-1"), correlation_id="flow-1")
    assert [p.type for p in paid.published] == ["shipment.completed"]
