"""Events the payments service publishes, on the ``payments`` topic."""

from __future__ import annotations

from choreokit.events import Event
from choreokit.services.example.contracts.bounds import Cents, Currency, DerivedId, Id, Text

TOPIC = "payments"


class PaymentAuthorized(Event, type="payment.authorized", version=1, topic=TOPIC):
    """The customer's payment is authorized for the order's amount."""

    order_id: Id
    payment_id: DerivedId
    amount_cents: Cents
    currency: Currency = "EUR"


class PaymentDeclined(Event, type="payment.declined", version=1, topic=TOPIC):
    """The payment was refused; nothing was charged."""

    order_id: Id
    reason: Text


class PaymentRefunded(Event, type="payment.refunded", version=1, topic=TOPIC):
    """An authorized payment was given back (compensation of a cancelled order)."""

    order_id: Id
    payment_id: DerivedId
    amount_cents: Cents
