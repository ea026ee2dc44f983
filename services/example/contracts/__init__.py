"""The example domain's contract: every event its services publish, and the order saga.

The services of the example (orders, inventory, payments, shipping) import this
package and choreokit's public names only, never each other's modules: in a real
deployment, this is the package the teams share (or generate from ``schemas/``).
"""

from choreokit.services.example.contracts.inventory import (
    ReservedLine,
    StockRejected,
    StockReleased,
    StockReserved,
)
from choreokit.services.example.contracts.orders import (
    Address,
    CancelReason,
    OrderCancelled,
    OrderConfirmed,
    OrderLine,
    OrderPlaced,
    OrderPlacedV1,
)
from choreokit.services.example.contracts.payments import (
    PaymentAuthorized,
    PaymentDeclined,
    PaymentRefunded,
)
from choreokit.services.example.contracts.saga import ORDER_SAGA, PAYMENT_APPROVAL
from choreokit.services.example.contracts.shipping import (
    UNSERVED_PREFIX,
    ShipmentCompleted,
    ShipmentFailed,
)

__all__ = [
    "ORDER_SAGA",
    "PAYMENT_APPROVAL",
    "UNSERVED_PREFIX",
    "Address",
    "CancelReason",
    "OrderCancelled",
    "OrderConfirmed",
    "OrderLine",
    "OrderPlaced",
    "OrderPlacedV1",
    "PaymentAuthorized",
    "PaymentDeclined",
    "PaymentRefunded",
    "ReservedLine",
    "ShipmentCompleted",
    "ShipmentFailed",
    "StockRejected",
    "StockReleased",
    "StockReserved",
]
