"""The order saga as the saga observer judges it, declared next to the events it names."""

from __future__ import annotations

from datetime import timedelta

from choreokit.events import (
    ApprovalGranted,
    ApprovalRejected,
    ApprovalRequested,
    Checkpoint,
    Fallback,
    SagaSpec,
    SagaStep,
)
from choreokit.services.example.contracts.inventory import (
    StockRejected,
    StockReleased,
    StockReserved,
)
from choreokit.services.example.contracts.orders import OrderCancelled, OrderConfirmed, OrderPlaced
from choreokit.services.example.contracts.payments import (
    PaymentAuthorized,
    PaymentDeclined,
    PaymentRefunded,
)
from choreokit.services.example.contracts.shipping import ShipmentCompleted, ShipmentFailed

PAYMENT_APPROVAL = Checkpoint(
    step="payment",
    deadline=timedelta(hours=24),
    fallback=Fallback.REJECT,
)
"""A person approves (or rejects) a large order before payment is taken; nobody within a
day rejects it."""

ORDER_SAGA = SagaSpec.declare(
    "order",
    description="An order: reserve stock, take payment, ship; cancel and compensate on failure.",
    start=OrderPlaced,
    success=[OrderConfirmed],
    failure=[OrderCancelled],
    steps={
        OrderPlaced: [StockReserved, StockRejected],
        # a payment decision within 30 s of the reservation, or saga.step_overdue says so
        StockReserved: SagaStep(
            [PaymentAuthorized, PaymentDeclined, ApprovalRequested],
            deadline=timedelta(seconds=30),
        ),
        # orders above CHOREO_ORDERS_APPROVAL_ABOVE_CENTS wait for a person (PAYMENT_APPROVAL)
        ApprovalGranted: [PaymentAuthorized, PaymentDeclined],
        ApprovalRejected: [PaymentDeclined],
        PaymentAuthorized: [ShipmentCompleted, ShipmentFailed],
        ShipmentCompleted: [OrderConfirmed],
        StockRejected: [OrderCancelled],
        PaymentDeclined: [OrderCancelled],
        ShipmentFailed: [OrderCancelled],
    },
    compensations={
        StockReserved: StockReleased,
        PaymentAuthorized: PaymentRefunded,
    },
    checkpoints=[PAYMENT_APPROVAL],
    timeout=timedelta(seconds=60),
)
"""Published as the ``order`` entry point of the ``choreokit.sagas`` group."""
