"""Events of the dlq_replay test, in the default registry, so that ``choreo`` (run with
``CHOREO_EVENT_MODULES=tests.integration.dlq_events``) validates corrected payloads."""

from __future__ import annotations

from choreokit.events import Event


class ItemAdded(Event, type="dlqtest.item.added", version=1, topic="dlqtest.items"):
    """An item to look at."""

    n: int
    label: str


class ItemSeen(Event, type="dlqtest.item.seen", version=1, topic="dlqtest.seen"):
    """The item was looked at: the end of its flow."""

    n: int


class ChargeRequested(Event, type="dlqdoc.charge.requested", version=1, topic="payments"):
    """docs/reliability.md's example: a payment to take."""

    order_id: str
    amount_cents: int
