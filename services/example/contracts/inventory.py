"""Events the inventory service publishes, on the ``inventory`` topic."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from choreokit.events import Event

TOPIC = "inventory"


class ReservedLine(BaseModel):
    """Stock set aside for one order line."""

    model_config = ConfigDict(frozen=True)

    sku: str
    quantity: int


class StockReserved(Event, type="stock.reserved", version=1, topic=TOPIC):
    """Every line of the order is reserved."""

    order_id: str
    reservation_id: str
    lines: tuple[ReservedLine, ...]
    amount_cents: int
    currency: str = "EUR"


class StockRejected(Event, type="stock.rejected", version=1, topic=TOPIC):
    """At least one line could not be reserved; nothing was reserved."""

    order_id: str
    sku: str
    requested: int
    available: int


class StockReleased(Event, type="stock.released", version=1, topic=TOPIC):
    """A reservation was given back (compensation of a cancelled order)."""

    order_id: str
    reservation_id: str
