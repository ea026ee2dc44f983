"""When and how an orchestration publishes its orchestration.run report: inside a handler, with
the handler's events and the flow's ids; never outside one; a service that did not declare the
type still publishes its completion event (the report is left out, with a warning); redelivery
republishes the very same report id."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from choreokit.events import Event, HandlerContext, Registry, Service
from choreokit.events.orchestration import Orchestration, OrchestrationRun, Step, StepContext
from choreokit.events.sql import Inbox, create_tables
from choreokit.services.runtime.database import create_engine
from choreokit.testing import ServiceKit

REGISTRY = Registry()
"""This module's own types: the default registry is the deployment's (``choreo topics acls``)."""
REGISTRY.register(OrchestrationRun)


class ReportAsked(
    Event, type="test.report.asked", version=1, topic="test-report-in", registry=REGISTRY
):
    order_id: str


class ReportDone(
    Event, type="test.report.done", version=1, topic="test-report-out", registry=REGISTRY
):
    order_id: str


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    db = create_engine(f"sqlite:///{tmp_path / 'svc.sqlite3'}")
    await create_tables(db)
    yield db
    await db.dispose()


async def noop(ctx: StepContext) -> dict[str, str]:
    return {"ok": ctx.step}


def service(engine: AsyncEngine, *, declared: bool, report: bool = True) -> Service:
    flow = Orchestration("two", [Step("a", noop), Step("b", noop)], engine=engine, report=report)
    publishes: list[type[Event]] = [ReportDone, *([OrchestrationRun] if declared else [])]
    svc = Service("reporter", registry=REGISTRY, publishes=publishes)
    svc.use(Inbox(engine, consumer=svc.name, registry=REGISTRY))

    @svc.handler(ReportAsked)
    async def handle(event: ReportAsked, ctx: HandlerContext) -> None:
        await flow.create_tables()
        await flow.run(event.order_id, {"order_id": event.order_id})
        await ctx.publish(ReportDone(order_id=event.order_id))

    return svc


async def test_the_report_goes_with_the_completion_and_again_with_the_same_id(
    engine: AsyncEngine,
) -> None:
    async with ServiceKit(service(engine, declared=True)) as kit:
        first = await kit.deliver(ReportAsked(order_id="o-1"), event_id="e-1", correlation_id="f")
        again = await kit.deliver(ReportAsked(order_id="o-1"), event_id="e-1", correlation_id="f")
    assert [p.type for p in first.published] == ["orchestration.run", "test.report.done"]
    report, done = first.published
    assert report.envelope.correlation_id == done.envelope.correlation_id == "f"
    assert report.envelope.causation_id == done.envelope.causation_id == "e-1"
    assert [s.name for s in first.one(OrchestrationRun).steps] == ["a", "b"]
    # The inbox replays what the first handling published: the same ids, nothing new.
    assert [p.envelope.id for p in again.published] == [p.envelope.id for p in first.published]


async def test_an_undeclared_report_is_left_out_and_the_completion_still_goes(
    engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, "choreokit.orchestration"):
        async with ServiceKit(service(engine, declared=False)) as kit:
            handled = await kit.deliver(ReportAsked(order_id="o-1"), correlation_id="f")
    assert [p.type for p in handled.published] == ["test.report.done"]
    assert handled.dead_letters == ()
    assert "declare OrchestrationRun" in caplog.text


async def test_report_false_publishes_nothing_but_the_outcome_keeps_it(engine: AsyncEngine) -> None:
    async with ServiceKit(service(engine, declared=True, report=False)) as kit:
        handled = await kit.deliver(ReportAsked(order_id="o-1"), correlation_id="f")
    assert [p.type for p in handled.published] == ["test.report.done"]
    outside = Orchestration("two", [Step("a", noop)], engine=engine)
    await outside.create_tables()
    outcome = await outside.run("o-2", {})  # no handler: nothing to publish through
    assert outcome.report is not None
    assert outcome.report.status == "succeeded"
