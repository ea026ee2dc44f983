"""Events the shipping service publishes, on the ``shipping`` topic."""

from __future__ import annotations

from pydantic import Field

from choreokit.events import Event
from choreokit.services.example.contracts.bounds import Cents, DerivedId, Id, Name, Text

TOPIC = "shipping"

#: Postal codes starting with this are outside the simulated carrier's area: its
#: quote fails for good, so the order is cancelled (the demo uses it on purpose).
UNSERVED_PREFIX = "99"


class ShipmentCompleted(Event, type="shipment.completed", version=1, topic=TOPIC):
    """Quote, label and pickup all succeeded: the hybrid pattern's completion event."""

    order_id: Id
    shipment_id: DerivedId
    carrier: Name
    tracking_number: Name
    price_cents: Cents


class ShipmentFailed(Event, type="shipment.failed", version=1, topic=TOPIC):
    """A step failed for good; the steps already done were compensated."""

    order_id: Id
    failed_step: Name
    reason: Text
    compensated_steps: tuple[Name, ...] = Field(default=(), max_length=16)
