"""The event an orchestration publishes about each run: ``orchestration.run``.

One summary per run (not one event per step), so a flow gains one record per
orchestration run however many steps and tries it took. It carries step names,
tries, statuses, timings and error *types* only: never a step's input, result
or error message, which may quote payload data.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from choreokit.events._model import Event, EventTime

TOPIC = "orchestrations"

MAX_STEPS = 64
"""Most steps a report lists (an orchestration with more reports the first ones)."""

MAX_ATTEMPTS = 1_000_000
MAX_MILLIS = 2**53 - 1

Name = Annotated[str, Field(min_length=1, max_length=128)]
RunId = Annotated[str, Field(min_length=1, max_length=1024)]
ErrorType = Annotated[str, Field(min_length=1, max_length=128)]
Attempts = Annotated[int, Field(ge=0, le=MAX_ATTEMPTS)]
Millis = Annotated[int, Field(ge=0, le=MAX_MILLIS)]

StepState = Literal["done", "failed", "compensated", "compensation_failed", "not_run"]
RunOutcome = Literal["succeeded", "compensated", "compensation_failed"]


class StepReport(BaseModel):
    """One step of a run, as far as the run got."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    name: Name
    status: StepState
    """``done``; ``failed`` (it failed for good); ``compensated`` or ``compensation_failed``
    (it was done, then undone, or its undoing failed); ``not_run`` (a step before it failed)."""

    attempts: Attempts = 0
    """Tries of the action in this run (0: not run, or recorded by an earlier process)."""

    offset_ms: Millis | None = None
    """From the run's start to the first try's start; ``None`` when not timed here."""

    duration_ms: Millis | None = None
    """From the first try's start to the last try's end; ``None`` when not timed here."""

    error_type: ErrorType | None = None
    """The exception class of the last failed try, if any try failed (a retried one too)."""

    compensation_attempts: Attempts = 0
    compensation_ms: Millis | None = None
    compensation_error_type: ErrorType | None = None


class OrchestrationRun(Event, type="orchestration.run", version=1, topic=TOPIC):
    """How one run of an in-service orchestration went: its steps, tries and compensations.

    Published by :meth:`~choreokit.events.orchestration.Orchestration.run` (when
    it runs inside a handler) in the same batch as the handler's completion
    event, with the flow's correlation id and the run's triggering event as cause.
    """

    orchestration: Name
    run_id: RunId
    status: RunOutcome
    resumed: bool = False
    """The run continued (or recalled) progress recorded before this try."""

    started_at: EventTime
    ended_at: EventTime
    duration_ms: Millis
    failed_step: Name | None = None
    error_type: ErrorType | None = None
    steps: tuple[StepReport, ...] = Field(default=(), max_length=MAX_STEPS)
