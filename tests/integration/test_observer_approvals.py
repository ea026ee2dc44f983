"""Checkpoint decisions in the observer's store on SQLite and PostgreSQL: two stores (two
observer instances) deciding the same flow record one decision and one event between them, and
the deadline's fallback loses to it."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from choreokit.services.saga_observer import schema
from choreokit.services.saga_observer.approvals import ApprovalError, DecisionRequest
from choreokit.services.saga_observer.records import micros
from choreokit.services.saga_observer.store import Store, open_engines
from tests.order_flows import as_records
from tests.unit.test_saga_checkpoints import waiting_flow
from tests.unit.test_saga_store import CATALOG, NOW, Fed


async def test_two_instances_record_one_decision_between_them(database_url: str) -> None:
    writer, reader = open_engines(database_url)
    other, other_reader = open_engines(database_url)
    try:
        first = Store(writer, CATALOG, group="observer")
        await first.migrate()
        second = Store(other, CATALOG, group="observer")
        flow, _request = waiting_flow()
        await Fed(first).feed(as_records(flow.steps), batch=50)

        def ask(approve: bool) -> DecisionRequest:
            return DecisionRequest(flow.correlation_id, "payment", approve, "ops", "operator", "r")

        results = await asyncio.gather(
            first.decide(ask(True), micros(NOW)),
            second.decide(ask(True), micros(NOW)),
            return_exceptions=True,
        )
        made = [r for r in results if not isinstance(r, BaseException)]
        assert [r.recorded for r in made].count(True) == 1, results
        with pytest.raises(ApprovalError, match="already approved"):
            await second.decide(ask(False), micros(NOW))
        past = micros(NOW) + int(timedelta(days=2).total_seconds() * 1_000_000)
        fallback = await second.sweep_steps(past)
        assert "approval.rejected" not in {c.type for c in fallback}
        async with writer.connect() as conn:
            decisions = (
                await conn.execute(select(func.count()).select_from(schema.approvals))
            ).scalar_one()
            events = (
                await conn.execute(
                    select(func.count())
                    .select_from(schema.lifecycle)
                    .where(schema.lifecycle.c.type.like("approval.%"))
                )
            ).scalar_one()
        assert (decisions, events) == (1, 1)
    finally:
        for engine in {writer, reader, other, other_reader}:
            await engine.dispose()
