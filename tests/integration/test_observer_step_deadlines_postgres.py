"""Step deadlines on PostgreSQL with two observer stores on one database: sweeping together,
they record ``saga.step_overdue`` once per flow and step between them (rows one holds are
skipped by the other), and the map and the stuck-flow search read the same waits."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

from sqlalchemy import select

from choreokit.services.saga_observer.queries import FlowFilter, Queries
from choreokit.services.saga_observer.records import micros
from choreokit.services.saga_observer.saga_map import SagaMaps
from choreokit.services.saga_observer.schema import lifecycle
from choreokit.services.saga_observer.store import Store, open_engines
from choreokit.services.saga_observer.waits import overdue_id
from tests import observer_fixtures
from tests.order_flows import Outcome, as_records, mix, steps_of
from tests.unit.test_saga_map import CATALOG, DEADLINE, SPEC, START, WITHIN
from tests.unit.test_saga_store import Fed

postgres_databases = observer_fixtures.postgres_databases
postgres_database = observer_fixtures.postgres_database


async def test_two_stores_record_each_overdue_step_once(postgres_database: str) -> None:
    flows = mix(60, outcomes=list(Outcome), seed=4, start=START)
    stops = {f.correlation_id for f in flows if f.outcome is Outcome.STOPS_AT_PAYMENT}
    first_writer, reader = open_engines(postgres_database)
    second_writer, _ = open_engines(postgres_database)
    try:
        first = Store(first_writer, CATALOG, group="observer")
        second = Store(second_writer, CATALOG, group="observer")
        await first.migrate()
        await Fed(first).feed(as_records(steps_of(flows)), batch=16, now=WITHIN)
        late = micros(START + DEADLINE + timedelta(seconds=1))
        rounds = await asyncio.gather(
            *(store.sweep_steps(late, limit=3) for store in (first, second, first, second))
        )
        while True:  # what the sweeper does: until a page comes back short
            more = await asyncio.gather(first.sweep_steps(late, 3), second.sweep_steps(late, 3))
            rounds.extend(more)
            if all(len(page) < 3 for page in more):
                break
        recorded = Counter(t.correlation_id for page in rounds for t in page)
        assert recorded == dict.fromkeys(stops, 1)
        async with reader.connect() as conn:
            ids = (
                await conn.execute(
                    select(lifecycle.c.id).where(lifecycle.c.type == "saga.step_overdue")
                )
            ).scalars()
            assert sorted(ids) == sorted(overdue_id(cid, "stock.reserved") for cid in stops)
        drawn = await SagaMaps(reader).saga_map(SPEC, since_us=None, until_us=None, now_us=late)
        node = next(n for n in drawn.nodes if n.id == "stock.reserved")
        assert (node.waiting.running, node.waiting.overdue) == (len(stops), len(stops))
        queries = Queries(reader, CATALOG, group="observer", jaeger_url="-")
        page, total = await queries.flows(
            FlowFilter(waiting_at="stock.reserved", waiting_since_us=late - 30_000_000),
            limit=50,
            offset=0,
        )
        assert total == len(stops)
        assert {f.correlation_id for f in page} == stops
    finally:
        await first_writer.dispose()
        await second_writer.dispose()
