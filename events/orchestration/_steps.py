"""A step of an orchestration: an action, its compensation, its timeout and retries."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from choreokit.events._errors import ChoreoError
from choreokit.events._retry import RetryPolicy

JSON = Any
"""A JSON-ready value (what steps take and return, and what is persisted)."""


class StepFailedError(ChoreoError):
    """Raised by a step's action for a failure that another try will not fix."""


@dataclass(frozen=True, slots=True)
class StepContext:
    """What a step's action (or compensation) is given.

    Attributes:
        run_id: The run this step belongs to.
        step: The step's name.
        attempt: 1 on the first try, then 2, 3, ...
        input: The run's input.
        results: The results of the steps completed before this one, by name.
    """

    run_id: str
    step: str
    attempt: int
    input: Mapping[str, JSON]
    results: Mapping[str, JSON]

    @property
    def idempotency_key(self) -> str:
        """The same for every try of this step in this run: pass it to the system you call.

        A step may run again after a crash that happened between its side
        effect and the recording of its result; the key lets the other system
        answer with the first result instead of acting twice.
        """
        return f"{self.run_id}:{self.step}"


Action = Callable[[StepContext], Awaitable[JSON]]
Compensation = Callable[[StepContext, JSON], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Step:
    """One step of an :class:`Orchestration`.

    Attributes:
        name: Unique within the orchestration; keep it stable (progress is
            recorded under it).
        action: Does the work; returns a JSON-ready result, recorded once it
            returns. Raise :class:`StepFailedError` to fail without retrying.
        compensate: Undoes the action, given its result, when a later step
            fails. ``None``: nothing to undo.
        timeout: Longest a single try may take.
        retry: Tries and backoff for the action and for the compensation.
    """

    name: str
    action: Action
    compensate: Compensation | None = None
    timeout: timedelta = timedelta(seconds=10)
    retry: RetryPolicy = field(default_factory=RetryPolicy)


@dataclass(frozen=True, slots=True)
class Await:
    """A step that waits for an event from outside the service (a durable wait).

    When a run reaches it, the run stops: :meth:`Orchestration.run` returns an
    outcome with status ``WAITING`` and the wait is recorded. Whoever handles
    the awaited event calls :meth:`Orchestration.deliver` with the run's id
    (the flow's correlation id, usually), which records the event as this
    step's result, exactly once, and runs the steps after it. A restart while
    waiting loses nothing: the wait is a row in the service's database.

    Attributes:
        name: Unique within the orchestration; keep it stable.
        types: The event types that end the wait (documentation, and checked by
            :meth:`Orchestration.deliver`).
    """

    name: str
    types: tuple[str, ...] = ()
