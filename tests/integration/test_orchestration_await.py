"""Durable waits inside a service (SQLite and PostgreSQL): an orchestration stops at an Await
step, survives a restart, and goes on exactly once when the awaited event is delivered."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from choreokit.events import ConfigurationError
from choreokit.events.orchestration import (
    Await,
    Orchestration,
    RunStatus,
    Step,
    StepContext,
    StepFailedError,
)
from choreokit.services.runtime.database import create_engine


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    db = create_engine(database_url)
    yield db
    await db.dispose()


class Charges:
    """The step after the wait: counts its calls, fails when the decision says no."""

    def __init__(self) -> None:
        self.calls = 0
        self.undone = 0

    async def reserve(self, ctx: StepContext) -> str:
        return f"hold-{ctx.input['order']}"

    async def release(self, ctx: StepContext, result: object) -> None:
        self.undone += 1

    async def charge(self, ctx: StepContext) -> str:
        self.calls += 1
        if not ctx.results["approval"]["event"]["granted"]:
            raise StepFailedError("rejected by a person")
        return "charged"


async def flow(engine: AsyncEngine, charges: Charges) -> Orchestration:
    orchestration = Orchestration(
        "approval-test",
        [
            Step("reserve", charges.reserve, compensate=charges.release),
            Await("approval", types=("approval.granted", "approval.rejected")),
            Step("charge", charges.charge),
        ],
        engine=engine,
    )
    await orchestration.create_tables()
    return orchestration


async def test_a_run_waits_and_resumes_after_a_restart_exactly_once(
    engine: AsyncEngine, database_url: str
) -> None:
    charges = Charges()
    first = await flow(engine, charges)
    outcome = await first.run("flow-1", {"order": "o-1"})
    assert outcome.waiting
    assert outcome.waiting_for == "approval"
    assert (await first.run("flow-1", {"order": "o-1"})).waiting  # a redelivery: still waits
    assert charges.calls == 0

    # A restart: a new engine and orchestration object over the same database.
    again = create_engine(database_url)
    try:
        restarted = await flow(again, charges)
        delivery = await restarted.deliver(
            "flow-1", "approval", {"granted": True}, delivery_id="evt-1"
        )
        assert delivery.accepted
        assert delivery.outcome is not None
        assert delivery.outcome.status is RunStatus.SUCCEEDED
        assert delivery.outcome.input == {"order": "o-1"}
        assert delivery.outcome.results["approval"] == {
            "delivery_id": "evt-1",
            "event": {"granted": True},
        }
        # The same event again (a redelivery after a crash): accepted, nothing runs twice.
        repeat = await restarted.deliver(
            "flow-1", "approval", {"granted": True}, delivery_id="evt-1"
        )
        assert repeat.accepted
        # Another event for the same wait: not accepted.
        other = await restarted.deliver(
            "flow-1", "approval", {"granted": False}, delivery_id="evt-2"
        )
        assert not other.accepted
    finally:
        await again.dispose()
    assert charges.calls == 1


async def test_of_two_racing_deliveries_exactly_one_is_accepted(engine: AsyncEngine) -> None:
    charges = Charges()
    orchestration = await flow(engine, charges)
    await orchestration.run("flow-2", {"order": "o-2"})
    results = await asyncio.gather(
        orchestration.deliver("flow-2", "approval", {"granted": True}, delivery_id="a"),
        orchestration.deliver("flow-2", "approval", {"granted": False}, delivery_id="b"),
    )
    assert sorted(r.accepted for r in results) == [False, True]
    assert charges.calls == 1


async def test_a_rejection_compensates_what_came_before_the_wait(engine: AsyncEngine) -> None:
    charges = Charges()
    orchestration = await flow(engine, charges)
    await orchestration.run("flow-3", {"order": "o-3"})
    delivery = await orchestration.deliver(
        "flow-3", "approval", {"granted": False}, delivery_id="r"
    )
    assert delivery.outcome is not None
    assert delivery.outcome.status is RunStatus.COMPENSATED
    assert delivery.outcome.failed_step == "charge"
    assert delivery.outcome.compensated == ("reserve",)
    assert charges.undone == 1


async def test_deliveries_to_no_waiting_run_or_a_plain_step_are_refused(
    engine: AsyncEngine,
) -> None:
    orchestration = await flow(engine, Charges())
    nobody = await orchestration.deliver("never-ran", "approval", {}, delivery_id="x")
    assert (nobody.accepted, nobody.outcome) == (False, None)
    assert nobody.held  # kept, in case the run comes after all (below)
    with pytest.raises(ConfigurationError, match="not an Await step"):
        await orchestration.deliver("never-ran", "charge", {}, delivery_id="x")


async def test_an_event_before_the_wait_is_kept_and_ends_the_wait_when_the_run_reaches_it(
    engine: AsyncEngine,
) -> None:
    """A decision that overtakes the run's trigger is not lost: the first one is kept."""
    charges = Charges()
    orchestration = await flow(engine, charges)
    early = await orchestration.deliver("flow-5", "approval", {"granted": True}, delivery_id="e")
    assert (early.accepted, early.outcome, early.held) == (False, None, True)
    later = await orchestration.deliver("flow-5", "approval", {"granted": False}, delivery_id="l")
    assert (later.accepted, later.held) == (False, False)  # the first early one counts
    assert (await orchestration.deliver("flow-5", "approval", {}, delivery_id="e")).held

    # A restart in between: the kept event is in the database, not in memory.
    restarted = await flow(engine, charges)
    outcome = await restarted.run("flow-5", {"order": "o-5"})
    assert outcome.succeeded, outcome
    assert outcome.results["approval"] == {
        "delivery_id": "e",
        "event": {"granted": True},
        "held": True,
    }
    assert charges.calls == 1
    # The early event redelivered now is the recorded one: the run is recalled, not rerun.
    repeat = await restarted.deliver("flow-5", "approval", {"granted": True}, delivery_id="e")
    assert repeat.accepted
    assert repeat.outcome is not None
    assert repeat.outcome.succeeded
    assert charges.calls == 1


async def test_a_run_that_reached_its_wait_first_is_not_given_a_kept_event(
    engine: AsyncEngine,
) -> None:
    charges = Charges()
    orchestration = await flow(engine, charges)
    assert (await orchestration.run("flow-6", {"order": "o-6"})).waiting
    on_time = await orchestration.deliver("flow-6", "approval", {"granted": True}, delivery_id="t")
    assert (on_time.accepted, on_time.held) == (True, False)
    assert on_time.outcome is not None
    assert "held" not in on_time.outcome.results["approval"]
