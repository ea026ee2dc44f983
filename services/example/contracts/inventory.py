"""Events the inventory service publishes, on the ``inventory`` topic."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from choreokit.events import Event
from choreokit.services.example.contracts.bounds import Cents, Count, Currency, DerivedId, Id, Text

TOPIC = "inventory"


class ReservedLine(BaseModel):
    """Stock set aside for one order line."""

    model_config = ConfigDict(frozen=True)

    sku: Id
    quantity: Count


class StockReserved(Event, type="stock.reserved", version=1, topic=TOPIC):
    """Every line of the order is reserved."""

    order_id: Id
    reservation_id: DerivedId
    lines: tuple[ReservedLine, ...] = Field(min_length=1, max_length=100)
    amount_cents: Cents
    currency: Currency = "EUR"


class StockRejected(Event, type="stock.rejected", version=1, topic=TOPIC):
    """At least one line could not be reserved; nothing was reserved."""

    order_id: Id
    sku: Id
    requested: Count
    available: Count
    reason: Text = ""
    """Why, when it is not a shortage of ``sku`` (the order could not be handled at all)."""


class StockReleased(Event, type="stock.released", version=1, topic=TOPIC):
    """A reservation was given back (compensation of a cancelled order)."""

    order_id: Id
    reservation_id: DerivedId
