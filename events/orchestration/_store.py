"""Where an orchestration's progress lives: one row per run, one per step."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    ForeignKeyConstraint,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncEngine

metadata = MetaData()

runs = Table(
    "choreo_orchestration_runs",
    metadata,
    Column("orchestration", String(128), primary_key=True),
    Column("run_id", String(1024), primary_key=True),
    Column("status", String(32), nullable=False),
    Column("input", Text, nullable=False),
    Column("failed_step", String(128), nullable=True),
    Column("error", Text, nullable=True),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=True),
)

steps = Table(
    "choreo_orchestration_steps",
    metadata,
    Column("orchestration", String(128), primary_key=True),
    Column("run_id", String(1024), primary_key=True),
    Column("step", String(128), primary_key=True),
    Column("status", String(32), nullable=False),
    Column("result", Text, nullable=True),
    Column("attempts", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    ForeignKeyConstraint(
        ["orchestration", "run_id"], [runs.c.orchestration, runs.c.run_id], ondelete="CASCADE"
    ),
)

early = Table(
    "choreo_orchestration_early",
    metadata,
    Column("orchestration", String(128), primary_key=True),
    Column("run_id", String(1024), primary_key=True),
    Column("step", String(128), primary_key=True),
    Column("result", Text, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
)
"""Events delivered to an Await step before the run reached it: the first one per step,
kept until the run records its wait (then it ends the wait at once)."""


def _upsert(dialect: str) -> Any:
    """The INSERT ... ON CONFLICT construct of the dialect (SQLite and PostgreSQL have one)."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert


class RunStatus(StrEnum):
    """Where a run stands."""

    RUNNING = "running"
    WAITING = "waiting"
    """Stopped at an :class:`Await` step until its event is delivered."""
    COMPENSATING = "compensating"
    SUCCEEDED = "succeeded"
    """Every step completed."""
    COMPENSATED = "compensated"
    """A step failed and every completed step before it was undone."""
    COMPENSATION_FAILED = "compensation_failed"
    """A step failed and at least one compensation failed too."""

    @property
    def finished(self) -> bool:
        """Whether the run has reached an end."""
        return self in {RunStatus.SUCCEEDED, RunStatus.COMPENSATED, RunStatus.COMPENSATION_FAILED}


class StepStatus(StrEnum):
    """Where a step stands."""

    DONE = "done"
    WAITING = "waiting"
    FAILED = "failed"
    COMPENSATED = "compensated"
    COMPENSATION_FAILED = "compensation_failed"


@dataclass
class RunState:
    """A run as recorded."""

    run_id: str
    status: RunStatus
    input: dict[str, Any]
    failed_step: str | None = None
    error: str | None = None
    steps: dict[str, tuple[StepStatus, Any]] = field(default_factory=dict)


class OrchestrationStore:
    """Records runs and steps, each change in its own short transaction."""

    def __init__(self, engine: AsyncEngine, orchestration: str) -> None:
        self._engine = engine
        self._name = orchestration

    async def create_tables(self) -> None:
        """Create the tables if they do not exist."""
        async with self._engine.begin() as conn:
            await conn.run_sync(metadata.create_all)

    async def load_or_create(self, run_id: str, run_input: dict[str, Any]) -> RunState:
        """Return the run's recorded state, recording a new run if there is none."""
        statement = (
            _upsert(self._engine.dialect.name)(runs)
            .values(
                orchestration=self._name,
                run_id=run_id,
                status=RunStatus.RUNNING.value,
                input=json.dumps(run_input),
                started_at=datetime.now(UTC),
            )
            .on_conflict_do_nothing(index_elements=[runs.c.orchestration, runs.c.run_id])
        )
        async with self._engine.begin() as conn:
            created = (await conn.execute(statement)).rowcount
        if created:
            return RunState(run_id=run_id, status=RunStatus.RUNNING, input=run_input)
        state = await self.load(run_id)
        assert state is not None
        return state

    async def load(self, run_id: str) -> RunState | None:
        """Return the run's recorded state, or ``None``."""
        async with self._engine.connect() as conn:
            run = (
                await conn.execute(
                    select(runs).where(runs.c.orchestration == self._name, runs.c.run_id == run_id)
                )
            ).first()
            if run is None:
                return None
            rows = await conn.execute(
                select(steps.c.step, steps.c.status, steps.c.result).where(
                    steps.c.orchestration == self._name, steps.c.run_id == run_id
                )
            )
            recorded = {
                row.step: (StepStatus(row.status), json.loads(row.result) if row.result else None)
                for row in rows
            }
        return RunState(
            run_id=run_id,
            status=RunStatus(run.status),
            input=json.loads(run.input),
            failed_step=run.failed_step,
            error=run.error,
            steps=recorded,
        )

    async def record_step(
        self, run_id: str, step: str, status: StepStatus, result: Any, attempts: int
    ) -> None:
        """Record a step's (new) status and result."""
        values = {
            "status": status.value,
            "result": json.dumps(result) if result is not None else None,
            "attempts": attempts,
            "updated_at": datetime.now(UTC),
        }
        statement = _upsert(self._engine.dialect.name)(steps).values(
            orchestration=self._name, run_id=run_id, step=step, **values
        )
        async with self._engine.begin() as conn:
            await conn.execute(
                statement.on_conflict_do_update(
                    index_elements=[steps.c.orchestration, steps.c.run_id, steps.c.step],
                    set_=values,
                )
            )

    async def deliver(self, run_id: str, step: str, result: Any) -> bool:
        """Record ``result`` as the waiting step's result; ``False`` if it was not waiting.

        One conditional update in one transaction: of two deliveries, racing or
        one after the other, exactly one finds the step waiting.
        """
        now = datetime.now(UTC)
        async with self._engine.begin() as conn:
            won = (
                await conn.execute(
                    update(steps)
                    .where(
                        steps.c.orchestration == self._name,
                        steps.c.run_id == run_id,
                        steps.c.step == step,
                        steps.c.status == StepStatus.WAITING.value,
                    )
                    .values(status=StepStatus.DONE.value, result=json.dumps(result), updated_at=now)
                )
            ).rowcount
            if won:
                await conn.execute(
                    update(runs)
                    .where(
                        runs.c.orchestration == self._name,
                        runs.c.run_id == run_id,
                        runs.c.status == RunStatus.WAITING.value,
                    )
                    .values(status=RunStatus.RUNNING.value)
                )
        return bool(won)

    async def hold(self, run_id: str, step: str, result: Any) -> Any:
        """Keep ``result`` for a step the run has not reached; return the one kept.

        The first delivery per run and step is kept (one conditional insert), so
        of two early deliveries exactly one ends the wait later.
        """
        statement = (
            _upsert(self._engine.dialect.name)(early)
            .values(
                orchestration=self._name,
                run_id=run_id,
                step=step,
                result=json.dumps(result),
                received_at=datetime.now(UTC),
            )
            .on_conflict_do_nothing(
                index_elements=[early.c.orchestration, early.c.run_id, early.c.step]
            )
        )
        async with self._engine.begin() as conn:
            await conn.execute(statement)
        kept = await self.held(run_id, step)
        assert kept is not None
        return kept

    async def held(self, run_id: str, step: str) -> Any | None:
        """The result kept by :meth:`hold` for the run's step, if any."""
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(early.c.result).where(
                        early.c.orchestration == self._name,
                        early.c.run_id == run_id,
                        early.c.step == step,
                    )
                )
            ).first()
        return json.loads(row.result) if row is not None else None

    async def record_run(
        self,
        run_id: str,
        status: RunStatus,
        *,
        failed_step: str | None = None,
        error: str | None = None,
    ) -> None:
        """Record the run's (new) status."""
        values: dict[str, Any] = {"status": status.value}
        if failed_step is not None:
            values["failed_step"] = failed_step
            values["error"] = error
        if status.finished:
            values["finished_at"] = datetime.now(UTC)
        async with self._engine.begin() as conn:
            await conn.execute(
                update(runs)
                .where(runs.c.orchestration == self._name, runs.c.run_id == run_id)
                .values(**values)
            )
