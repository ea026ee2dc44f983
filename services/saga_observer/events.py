"""Events the saga observer publishes, on the ``sagas`` topic: a flow's lifecycle.

They are the hybrid pattern's completion events for choreographed flows: each
carries the flow's correlation id (in the envelope, as every event of the
flow does) and names as its cause the event that decided it. Each is published
at most once per flow and transition, under an id derived from the flow and
the type, so a repeat after a crash carries the same id and is dropped by
consumers that deduplicate by ``ce_id``.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from choreokit.events import MAX_ATTRIBUTE_LENGTH, Event, EventTime

Type = Annotated[str, Field(min_length=1, max_length=MAX_ATTRIBUTE_LENGTH)]
Ref = Annotated[str, Field(min_length=1, max_length=MAX_ATTRIBUTE_LENGTH)]
Count = Annotated[int, Field(ge=0, le=2**63 - 1)]
Types = Annotated[tuple[Type, ...], Field(max_length=256)]

TOPIC = "sagas"


class ExpectedStep(BaseModel):
    """A step a flow is waiting for."""

    model_config = ConfigDict(frozen=True)

    reason: Type
    """``next-step``, ``compensation``, ``missing-cause`` or ``missing-start``."""

    one_of: Types = ()
    """Event types, one of which is expected."""

    after_id: Ref | None = None
    """The event it would follow (for ``missing-cause``: the id of the missing cause)."""

    after_type: Type | None = None


class SagaCompleted(Event, type="saga.completed", version=1, topic=TOPIC):
    """A flow reached a success end."""

    saga: Type
    end_type: Type
    started_at: EventTime
    ended_at: EventTime
    duration_ms: Count
    event_count: Count


class SagaFailed(Event, type="saga.failed", version=1, topic=TOPIC):
    """A flow reached a failure end and stays failed.

    Either nothing needed compensating (``missing`` is empty), or a required
    compensation is still missing after the timeout (``failed-uncompensated``).
    """

    saga: Type
    status: Type
    """``failed`` or ``failed-uncompensated``."""

    end_type: Type
    started_at: EventTime
    ended_at: EventTime | None = None
    missing: Types = ()
    """Required compensations not seen by the timeout."""


class SagaCompensated(Event, type="saga.compensated", version=1, topic=TOPIC):
    """A flow failed and every compensation it required happened."""

    saga: Type
    end_type: Type
    compensations: Types
    started_at: EventTime
    ended_at: EventTime
    duration_ms: Count


class SagaStalled(Event, type="saga.stalled", version=1, topic=TOPIC):
    """A flow did not end within its timeout; ``expected`` says what it waits for."""

    saga: Type
    started_at: EventTime
    deadline: AwareDatetime
    last_type: Type
    expected: Annotated[tuple[ExpectedStep, ...], Field(max_length=256)]


class SagaStepOverdue(Event, type="saga.step_overdue", version=1, topic=TOPIC):
    """A flow waits at a step past the step's own deadline (published once per flow and step).

    The flow itself is not judged differently: it may still go on, or stall at
    the saga's timeout. A service reacts by escalating or compensating.
    """

    saga: Type
    step: Type
    """The type of the event after which the flow waits (the spec's step)."""

    waiting_event_id: Ref
    """The event that made the flow wait here (also the envelope's causation id)."""

    waiting_event_type: Type
    waiting_since: EventTime
    deadline: AwareDatetime
    """When the next step was due."""

    expected: Types = ()
    """The types one of which was expected by the deadline."""


LIFECYCLE_EVENTS: tuple[type[Event], ...] = (
    SagaCompleted,
    SagaFailed,
    SagaCompensated,
    SagaStalled,
    SagaStepOverdue,
)
"""Every lifecycle event class."""

LIFECYCLE_TYPES = frozenset(m.event_info().type for m in LIFECYCLE_EVENTS)
"""Their types: records of these types are the observer's own output, not flow steps."""
