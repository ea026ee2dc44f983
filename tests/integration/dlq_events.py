"""Events of the dlq_replay and reliability-docs tests.

``choreo`` run with ``CHOREO_EVENT_MODULES=tests.integration.dlq_events`` declares them
in the default registry (so ``--data`` is validated); the test process itself keeps
them in a registry of their own, so that they never join the default registry that
other tests (``choreo schemas check``) read.
"""

from __future__ import annotations

import os

from choreokit.events import Event, Registry, default_registry

registry = default_registry if os.environ.get("CHOREO_EVENT_MODULES") == __name__ else Registry()


class ItemAdded(
    Event, type="dlqtest.item.added", version=1, topic="dlqtest.items", registry=registry
):
    """An item to look at."""

    n: int
    label: str


class ItemSeen(Event, type="dlqtest.item.seen", version=1, topic="dlqtest.seen", registry=registry):
    """The item was looked at: the end of its flow."""

    n: int


class ChargeRequested(
    Event, type="dlqdoc.charge.requested", version=1, topic="payments", registry=registry
):
    """docs/reliability.md's example: a payment to take."""

    order_id: str
    amount_cents: int
