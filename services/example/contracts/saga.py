"""The order saga as the saga observer judges it, declared next to the events it names."""

from __future__ import annotations

from datetime import timedelta

from choreokit.events import SagaSpec, SagaStep
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
            [PaymentAuthorized, PaymentDeclined], deadline=timedelta(seconds=30)
        ),
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
    timeout=timedelta(seconds=60),
)
"""Published as the ``order`` entry point of the ``choreokit.sagas`` group."""
