"""Events the orders service publishes, on the ``orders`` topic."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from choreokit.events import Event, Sensitive, upcaster
from choreokit.services.example.contracts.bounds import MAX_CENTS, Cents, Currency, Id, Name, Text

TOPIC = "orders"


class OrderLine(BaseModel):
    """One product line of an order."""

    model_config = ConfigDict(frozen=True)

    sku: str = Field(min_length=1, max_length=64)
    quantity: int = Field(gt=0, le=1000)
    unit_price_cents: Cents


class Address(BaseModel):
    """Where an order ships to."""

    model_config = ConfigDict(frozen=True)

    country: str = Field(min_length=2, max_length=2)
    postal_code: Annotated[str, Sensitive] = Field(min_length=1, max_length=16)


class OrderPlacedV1(Event, type="order.placed", version=1, topic=TOPIC):
    """An order for a single product (the first contract; still published by old clients)."""

    order_id: str = Field(min_length=1, max_length=64)
    customer_id: str = Field(min_length=1, max_length=64)
    sku: str = Field(min_length=1, max_length=64)
    quantity: int = Field(gt=0, le=1000)
    unit_price_cents: Cents
    country: str = Field(default="DE", min_length=2, max_length=2)
    postal_code: Annotated[str, Sensitive] = Field(default="10115", min_length=1, max_length=16)

    @model_validator(mode="after")
    def _total_fits(self) -> Self:
        _check_total(self.quantity * self.unit_price_cents)
        return self


class OrderPlaced(Event, type="order.placed", version=2, topic=TOPIC):
    """An order with several lines and a shipping address."""

    order_id: str = Field(min_length=1, max_length=64)
    customer_id: str = Field(min_length=1, max_length=64)
    lines: tuple[OrderLine, ...] = Field(min_length=1, max_length=100)
    ship_to: Address
    currency: Currency = "EUR"
    email: Annotated[str | None, Sensitive] = Field(default=None, min_length=3, max_length=254)
    """Where the customer hears about the order; personal data, so marked sensitive."""

    @model_validator(mode="after")
    def _total_fits(self) -> Self:
        _check_total(self.total_cents)
        return self

    @property
    def total_cents(self) -> int:
        """What the order costs."""
        return sum(line.quantity * line.unit_price_cents for line in self.lines)


def _check_total(total: int) -> None:
    if total > MAX_CENTS:
        raise ValueError(
            f"the order's total of {total} cents is more than {MAX_CENTS}; split the order"
        )


@upcaster
def _order_placed_v1_to_v2(old: OrderPlacedV1) -> OrderPlaced:
    return OrderPlaced(
        order_id=old.order_id,
        customer_id=old.customer_id,
        lines=(
            OrderLine(sku=old.sku, quantity=old.quantity, unit_price_cents=old.unit_price_cents),
        ),
        ship_to=Address(country=old.country, postal_code=old.postal_code),
    )


class CancelReason(StrEnum):
    """Why an order was cancelled."""

    OUT_OF_STOCK = "out_of_stock"
    PAYMENT_DECLINED = "payment_declined"
    SHIPPING_FAILED = "shipping_failed"


class OrderConfirmed(Event, type="order.confirmed", version=1, topic=TOPIC):
    """The order is paid for and on its way: the flow's successful end."""

    order_id: Id
    tracking_number: Name


class OrderCancelled(Event, type="order.cancelled", version=1, topic=TOPIC):
    """The order will not be fulfilled; reservations and payments are to be undone."""

    order_id: Id
    reason: CancelReason
    detail: Text = ""
