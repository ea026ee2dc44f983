"""Events the saga observer publishes, on the ``sagas`` topic: a flow's lifecycle.

They are the hybrid pattern's completion events for choreographed flows: each
carries the flow's correlation id (in the envelope, as every event of the
flow does) and names as its cause the event that decided it. Each is published
at most once per flow and transition, under an id derived from the flow and
the type, so a repeat after a crash carries the same id and is dropped by
consumers that deduplicate by ``ce_id``.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

from choreokit.events import Event

TOPIC = "sagas"


class ExpectedStep(BaseModel):
    """A step a flow is waiting for."""

    model_config = ConfigDict(frozen=True)

    reason: str
    """``next-step``, ``compensation``, ``missing-cause`` or ``missing-start``."""

    one_of: tuple[str, ...] = ()
    """Event types, one of which is expected."""

    after_id: str | None = None
    """The event it would follow (for ``missing-cause``: the id of the missing cause)."""

    after_type: str | None = None


class SagaCompleted(Event, type="saga.completed", version=1, topic=TOPIC):
    """A flow reached a success end."""

    saga: str
    end_type: str
    started_at: datetime
    ended_at: datetime
    duration_ms: int
    event_count: int


class SagaFailed(Event, type="saga.failed", version=1, topic=TOPIC):
    """A flow reached a failure end and stays failed.

    Either nothing needed compensating (``missing`` is empty), or a required
    compensation is still missing after the timeout (``failed-uncompensated``).
    """

    saga: str
    status: str
    """``failed`` or ``failed-uncompensated``."""

    end_type: str
    started_at: datetime
    ended_at: datetime | None = None
    missing: tuple[str, ...] = ()
    """Required compensations not seen by the timeout."""


class SagaCompensated(Event, type="saga.compensated", version=1, topic=TOPIC):
    """A flow failed and every compensation it required happened."""

    saga: str
    end_type: str
    compensations: tuple[str, ...]
    started_at: datetime
    ended_at: datetime
    duration_ms: int


class SagaStalled(Event, type="saga.stalled", version=1, topic=TOPIC):
    """A flow did not end within its timeout; ``expected`` says what it waits for."""

    saga: str
    started_at: datetime
    deadline: datetime
    last_type: str
    expected: tuple[ExpectedStep, ...]


LIFECYCLE_EVENTS: tuple[type[Event], ...] = (
    SagaCompleted,
    SagaFailed,
    SagaCompensated,
    SagaStalled,
)
"""Every lifecycle event class."""

LIFECYCLE_TYPES = frozenset(m.event_info().type for m in LIFECYCLE_EVENTS)
"""Their types: records of these types are the observer's own output, not flow steps."""
