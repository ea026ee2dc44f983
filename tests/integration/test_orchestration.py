"""Orchestration inside a service: order, retries, timeouts, compensation, resumption, spans."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from choreokit.events import RetryPolicy
from choreokit.events.orchestration import (
    Orchestration,
    RunStatus,
    Step,
    StepContext,
    StepFailedError,
)
from choreokit.services.runtime.database import create_engine

ROOT = Path(__file__).resolve().parents[2]
QUICK = RetryPolicy(max_attempts=3, first_backoff=timedelta(milliseconds=1), jitter=0)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    db = create_engine(database_url)
    yield db
    await db.dispose()


class Recorder:
    def __init__(self) -> None:
        self.log: list[str] = []

    def step(
        self,
        name: str,
        *,
        fail_times: int = 0,
        permanent: bool = False,
        hang: bool = False,
        compensable: bool = True,
        compensation_fails: bool = False,
    ) -> Step:
        calls = 0

        async def act(ctx: StepContext) -> dict[str, object]:
            nonlocal calls
            calls += 1
            self.log.append(f"{name}#{ctx.attempt}")
            if permanent:
                raise StepFailedError(f"{name} refused")
            if hang:
                await asyncio.Event().wait()
            if calls <= fail_times:
                raise ConnectionError(f"{name} flaky")
            return {"step": name, "seen": sorted(ctx.results)}

        async def undo(ctx: StepContext, result: object) -> None:
            self.log.append(f"undo {name} {result}")
            if compensation_fails:
                raise ConnectionError("cannot undo")

        return Step(
            name,
            act,
            compensate=undo if compensable else None,
            timeout=timedelta(milliseconds=200),
            retry=QUICK,
        )


async def test_steps_run_in_order_and_see_earlier_results(engine: AsyncEngine) -> None:
    r = Recorder()
    o = Orchestration("o", [r.step("a"), r.step("b"), r.step("c")], engine=engine)
    await o.create_tables()
    outcome = await o.run("run-1", {"x": 1})
    assert outcome.succeeded
    assert r.log == ["a#1", "b#1", "c#1"]
    assert outcome.results["c"] == {"step": "c", "seen": ["a", "b"]}


async def test_a_flaky_step_is_retried_within_its_budget(engine: AsyncEngine) -> None:
    r = Recorder()
    o = Orchestration("o", [r.step("a", fail_times=2), r.step("b")], engine=engine)
    await o.create_tables()
    outcome = await o.run("run-1", {})
    assert outcome.status is RunStatus.SUCCEEDED
    assert r.log == ["a#1", "a#2", "a#3", "b#1"]


async def test_failure_compensates_completed_steps_in_reverse(engine: AsyncEngine) -> None:
    r = Recorder()
    steps = [
        r.step("quote", compensable=False),
        r.step("label"),
        r.step("insure"),
        r.step("pickup", permanent=True),
    ]
    o = Orchestration("o", steps, engine=engine)
    await o.create_tables()
    outcome = await o.run("run-1", {})
    assert outcome.status is RunStatus.COMPENSATED
    assert outcome.failed_step == "pickup"
    assert "StepFailedError: pickup refused" in (outcome.error or "")
    assert outcome.compensated == ("insure", "label")
    assert r.log[3:] == [
        "pickup#1",
        "undo insure {'step': 'insure', 'seen': ['label', 'quote']}",
        "undo label {'step': 'label', 'seen': ['quote']}",
    ]


async def test_a_step_that_exceeds_its_timeout_fails_after_its_retries(engine: AsyncEngine) -> None:
    r = Recorder()
    o = Orchestration("o", [r.step("a"), r.step("b", hang=True)], engine=engine)
    await o.create_tables()
    outcome = await o.run("run-1", {})
    assert outcome.status is RunStatus.COMPENSATED
    assert outcome.failed_step == "b"
    assert "TimeoutError" in (outcome.error or "")
    assert r.log.count("b#1") == 1
    assert [e for e in r.log if e.startswith("b#")] == ["b#1", "b#2", "b#3"]


async def test_a_failed_compensation_is_reported(engine: AsyncEngine) -> None:
    r = Recorder()
    steps = [r.step("a", compensation_fails=True), r.step("b"), r.step("c", permanent=True)]
    o = Orchestration("o", steps, engine=engine)
    await o.create_tables()
    outcome = await o.run("run-1", {})
    assert outcome.status is RunStatus.COMPENSATION_FAILED
    assert outcome.compensated == ("b",)
    assert outcome.uncompensated == ("a",)


async def test_a_finished_run_is_recalled_not_repeated(engine: AsyncEngine) -> None:
    r = Recorder()
    o = Orchestration("o", [r.step("a"), r.step("b", permanent=True)], engine=engine)
    await o.create_tables()
    first = await o.run("run-1", {})
    again = await o.run("run-1", {})
    assert again == first
    assert r.log.count("a#1") == 1
    assert r.log.count("b#1") == 1


async def test_each_run_and_step_is_a_span(engine: AsyncEngine) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    r = Recorder()
    o = Orchestration(
        "ship", [r.step("a"), r.step("b", permanent=True)], engine=engine, tracer_provider=provider
    )
    await o.create_tables()
    await o.run("run-9", {})
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert set(spans) == {"orchestrate ship", "step a", "step b", "compensate a"}
    root = spans["orchestrate ship"]
    assert root.context is not None
    for name in ("step a", "step b", "compensate a"):
        span = spans[name]
        assert span.parent is not None
        assert span.context is not None
        assert span.parent.span_id == root.context.span_id
        assert span.context.trace_id == root.context.trace_id
        assert (span.attributes or {})["choreo.orchestration.run_id"] == "run-9"
    assert root.attributes is not None
    assert root.attributes["choreo.orchestration.status"] == "compensated"
    # Exception types only: a message ("b refused") may quote the run's input.
    assert root.status.description == "step b failed"
    assert spans["step b"].status.description == "StepFailedError"
    for span in spans.values():
        for event in span.events:
            assert "exception.message" not in (event.attributes or {}), span.name
            assert "exception.stacktrace" not in (event.attributes or {}), span.name


def worker(db: str, run_id: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.integration.orchestration_worker",
            "--db",
            db,
            "--run-id",
            run_id,
            *extra,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_a_run_killed_mid_step_resumes_without_repeating_side_effects(
    database_url: str,
) -> None:
    """SIGKILL right after a step's side effect, before its result is recorded: the worst moment."""
    killed = await asyncio.to_thread(worker, database_url, "run-k", "--die-after-effect", "label")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    resumed = await asyncio.to_thread(worker, database_url, "run-k")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["status"] == "succeeded"

    from tests.integration.orchestration_worker import ledger

    db = create_engine(database_url)
    try:
        async with db.connect() as conn:
            rows = {
                r.step: r.calls for r in await conn.execute(select(ledger.c.step, ledger.c.calls))
            }
    finally:
        await db.dispose()
    # one side effect per step; the quote, recorded before the crash, was not called again;
    # the label was called again after the crash, with the same idempotency key.
    assert rows == {"quote": 1, "label": 2, "pickup": 1}
