"""Events the shipping service publishes, on the ``shipping`` topic."""

from __future__ import annotations

from choreokit.events import Event

TOPIC = "shipping"

#: Postal codes starting with this are outside the simulated carrier's area: its
#: quote fails for good, so the order is cancelled (the demo uses it on purpose).
UNSERVED_PREFIX = "99"


class ShipmentCompleted(Event, type="shipment.completed", version=1, topic=TOPIC):
    """Quote, label and pickup all succeeded: the hybrid pattern's completion event."""

    order_id: str
    shipment_id: str
    carrier: str
    tracking_number: str
    price_cents: int


class ShipmentFailed(Event, type="shipment.failed", version=1, topic=TOPIC):
    """A step failed for good; the steps already done were compensated."""

    order_id: str
    failed_step: str
    reason: str
    compensated_steps: tuple[str, ...] = ()
