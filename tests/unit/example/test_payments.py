"""payments' handlers, in memory: authorize within the credit limit, refund on cancel, wait for
a person above the approval amount (and keep a decision that came before the wait)."""

from __future__ import annotations

from pathlib import Path

from choreokit.events import ApprovalGranted, ApprovalRejected, ApprovalRequested
from choreokit.services.example.contracts.inventory import ReservedLine, StockReserved
from choreokit.services.example.contracts.orders import CancelReason, OrderCancelled
from choreokit.services.example.contracts.payments import (
    PaymentAuthorized,
    PaymentDeclined,
    PaymentRefunded,
)
from choreokit.services.example.payments.app import build
from choreokit.services.example.payments.settings import PaymentsSettings
from choreokit.testing import drive
from tests.unit.example.support import runtime

LIMIT = PaymentsSettings(credit_limit_cents=1_000)
APPROVING = PaymentsSettings.model_validate(
    {"credit_limit_cents": 100_000, "CHOREO_ORDERS_APPROVAL_ABOVE_CENTS": 50_000}
)


def reserved(order_id: str, amount_cents: int) -> StockReserved:
    return StockReserved(
        order_id=order_id,
        reservation_id=f"res-{order_id}",
        lines=(ReservedLine(sku="SKU-1", quantity=1),),
        amount_cents=amount_cents,
    )


async def test_a_reservation_within_the_limit_is_authorized_in_its_flow(tmp_path: Path) -> None:
    async with drive(build(runtime("payments", tmp_path), LIMIT)[1]) as kit:
        handling = await kit.deliver(reserved("o-1", 1_000), correlation_id="flow-1")
    authorized = handling.one(PaymentAuthorized)
    assert (authorized.payment_id, authorized.amount_cents) == ("pay-o-1", 1_000)
    assert handling.published[0].envelope.correlation_id == "flow-1"


async def test_a_reservation_over_the_limit_is_declined_saying_why(tmp_path: Path) -> None:
    async with drive(build(runtime("payments", tmp_path), LIMIT)[1]) as kit:
        handling = await kit.deliver(reserved("o-1", 1_001))
    assert "credit limit" in handling.one(PaymentDeclined).reason


async def test_a_cancelled_order_is_refunded_only_if_it_was_authorized(tmp_path: Path) -> None:
    async with drive(build(runtime("payments", tmp_path), LIMIT)[1]) as kit:
        # One flow per order: the order id is bound to the flow that reserved it.
        await kit.deliver(reserved("o-1", 500), correlation_id="flow-1")
        await kit.deliver(reserved("o-2", 5_000), correlation_id="flow-2")
        paid = await kit.deliver(
            OrderCancelled(order_id="o-1", reason=CancelReason.SHIPPING_FAILED),
            correlation_id="flow-1",
        )
        declined = await kit.deliver(
            OrderCancelled(order_id="o-2", reason=CancelReason.PAYMENT_DECLINED),
            correlation_id="flow-2",
        )
    refund = paid.one(PaymentRefunded)
    assert (refund.payment_id, refund.amount_cents) == ("pay-o-1", 500)
    assert declined.published == ()


async def test_an_order_above_the_approval_amount_waits_for_the_decision(tmp_path: Path) -> None:
    async with drive(build(runtime("payments", tmp_path), APPROVING)[1]) as kit:
        asked = await kit.deliver(reserved("o-1", 60_000), correlation_id="flow-1")
        assert asked.one(ApprovalRequested).flow == "flow-1"
        decided = await kit.deliver(
            ApprovalGranted(flow="flow-1", step="payment", actor="anna"), correlation_id="flow-1"
        )
    assert decided.one(PaymentAuthorized).amount_cents == 60_000


async def test_a_decision_before_payments_waits_for_it_is_kept_and_applied(tmp_path: Path) -> None:
    """It used to be logged and dropped: the flow then waited for a decision already made."""
    async with drive(build(runtime("payments", tmp_path), APPROVING)[1]) as kit:
        early = await kit.deliver(
            ApprovalGranted(flow="flow-1", step="payment", actor="anna"), correlation_id="flow-1"
        )
        rejected_early = await kit.deliver(
            ApprovalRejected(flow="flow-2", step="payment", actor="ben", reason="no"),
            correlation_id="flow-2",
        )
        paid = await kit.deliver(reserved("o-1", 60_000), correlation_id="flow-1")
        declined = await kit.deliver(reserved("o-2", 60_000), correlation_id="flow-2")
    assert early.published == ()
    assert rejected_early.published == ()
    assert paid.one(PaymentAuthorized).payment_id == "pay-o-1"
    assert paid.events(ApprovalRequested) == []  # decided already: nobody is asked
    assert declined.one(PaymentDeclined).reason == "rejected by ben: no"
