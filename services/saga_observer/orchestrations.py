"""In-service orchestration runs of a flow, read from the ``orchestration.run`` events it holds.

A service that orchestrates internally (the hybrid pattern) publishes one
``orchestration.run`` event per run, with the flow's correlation id: the
observer stores it as any event of the flow, and this module turns the stored
payloads into the runs and steps the UI draws inside the service's lane. No
table of its own and nothing from the service's database: what the flow's
events say is all there is.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from choreokit.events.orchestration import OrchestrationRun
from choreokit.services.saga_observer.records import from_micros

RUN_TYPE = OrchestrationRun.event_info().type


class OrchestrationStepView(BaseModel):
    """One step of a run: its tries, status and timing (no input, result or message)."""

    model_config = ConfigDict(frozen=True)

    name: str
    status: str = Field(description="done, failed, compensated, compensation_failed or not_run.")
    attempts: int = Field(description="Tries of the action in the reported run (0: not run here).")
    retries: int = Field(description="Tries after the first.")
    offset_ms: int | None = Field(description="From the run's start to the step's first try.")
    duration_ms: int | None
    error_type: str | None = Field(description="The exception class of the last failed try.")
    compensated: bool = Field(description="The step was undone after a later step failed.")
    compensation_attempts: int
    compensation_ms: int | None
    compensation_error_type: str | None


class OrchestrationRunView(BaseModel):
    """One run of an in-service orchestration, drawn in its service's lane."""

    model_config = ConfigDict(frozen=True)

    event_id: str = Field(description="The orchestration.run event that reported it.")
    service: str = Field(description="The service that ran it (the event's publisher).")
    cause_id: str | None = Field(description="The event that started the run.")
    time: datetime = Field(description="When the report was published (the run's end).")
    readable: bool = Field(description="False: the payload was not a report this observer reads.")
    orchestration: str | None = None
    run_id: str | None = None
    status: str | None = Field(None, description="succeeded, compensated or compensation_failed.")
    resumed: bool = False
    started_at: datetime | None = None
    ended_at: datetime | None = None
    duration_ms: int | None = None
    failed_step: str | None = None
    error_type: str | None = None
    steps: list[OrchestrationStepView] = Field(default_factory=list)


@dataclass(frozen=True, slots=True)
class StoredReport:
    """The columns of a stored ``orchestration.run`` event this module reads."""

    id: str
    service: str
    causation_id: str | None
    time_us: int
    payload: str | None


def orchestration_runs(rows: Iterable[StoredReport]) -> list[OrchestrationRunView]:
    """The runs reported by ``rows`` (a flow's ``orchestration.run`` events), by time.

    A payload that is not a report (too large to keep, not JSON, out of bounds)
    is listed as unreadable rather than dropped, so a broken report shows.
    """
    runs = [_run(row) for row in rows]
    return sorted(runs, key=lambda r: (r.time, r.event_id))


def _run(row: StoredReport) -> OrchestrationRunView:
    base = OrchestrationRunView(
        event_id=row.id,
        service=row.service,
        cause_id=row.causation_id,
        time=from_micros(row.time_us),
        readable=False,
    )
    if row.payload is None:
        return base
    try:
        report = OrchestrationRun.model_validate(json.loads(row.payload))
    except (ValueError, ValidationError):
        return base
    return base.model_copy(
        update={
            "readable": True,
            "orchestration": report.orchestration,
            "run_id": report.run_id,
            "status": report.status,
            "resumed": report.resumed,
            "started_at": report.started_at,
            "ended_at": report.ended_at,
            "duration_ms": report.duration_ms,
            "failed_step": report.failed_step,
            "error_type": report.error_type,
            "steps": [
                OrchestrationStepView(
                    name=s.name,
                    status=s.status,
                    attempts=s.attempts,
                    retries=max(0, s.attempts - 1),
                    offset_ms=s.offset_ms,
                    duration_ms=s.duration_ms,
                    error_type=s.error_type,
                    compensated=s.status in {"compensated", "compensation_failed"},
                    compensation_attempts=s.compensation_attempts,
                    compensation_ms=s.compensation_ms,
                    compensation_error_type=s.compensation_error_type,
                )
                for s in report.steps
            ],
        }
    )
