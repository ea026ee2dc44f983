"""The observer's write path on both databases: few statements per batch, rows handed to
the driver as tuples, and batches of disjoint partitions applied at once on PostgreSQL
without a lost update."""

from __future__ import annotations

import asyncio
import random
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from sqlalchemy import event, select

from choreokit.events import Envelope, encode_headers
from choreokit.services.saga_observer.events import LIFECYCLE_TYPES
from choreokit.services.saga_observer.queries import Queries
from choreokit.services.saga_observer.records import classify, micros
from choreokit.services.saga_observer.schema import lifecycle
from choreokit.services.saga_observer.store import Advance, Store, open_engines
from tests import observer_fixtures
from tests.order_flows import Outcome, as_records, mix, steps_of
from tests.support import record
from tests.unit.test_saga_store import CATALOG, NOW, Fed, semantic

postgres_databases = observer_fixtures.postgres_databases
HOT = ("obs_events", "obs_flows", "obs_lifecycle", "obs_waits")


@asynccontextmanager
async def store_at(url: str) -> AsyncIterator[tuple[Store, Queries, Any]]:
    writer, reader = open_engines(url)
    store = Store(writer, CATALOG, group="observer")
    await store.migrate()
    try:
        yield store, Queries(reader, CATALOG, group="observer", jaeger_url="-"), writer
    finally:
        await writer.dispose()
        if reader is not writer:
            await reader.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'observer.sqlite3'}"
    create: Callable[[], str] = request.getfixturevalue("postgres_databases")
    return create()


@pytest.fixture
def two_postgres(postgres_databases: Callable[[], str]) -> tuple[str, str]:
    """Two fresh PostgreSQL databases."""
    return postgres_databases(), postgres_databases()


async def test_a_batch_of_new_flows_writes_each_hot_table_in_one_driver_level_statement(
    url: str,
) -> None:
    """Events, flow rows, verdicts, the outbox, the waits: one statement each per batch, its rows
    handed to the driver as tuples (no compiled statement: SQLAlchemy's per-row parameter
    processing is skipped); on PostgreSQL one round trip each (arrays through ``unnest``)
    and no SELECT of the events just inserted (``INSERT ... RETURNING`` tells the new ones)."""
    records = as_records(steps_of(mix(40, outcomes=list(Outcome), seed=5, start=NOW)))
    async with store_at(url) as (store, queries, writer):
        seen: list[tuple[str, bool, bool]] = []

        @event.listens_for(writer.sync_engine, "before_cursor_execute")
        def _count(_c: Any, _cur: Any, sql: str, _p: Any, context: Any, many: bool) -> None:
            seen.append((" ".join(sql.split()[:3]), context.compiled is None, many))

        await Fed(store).feed(records, batch=len(records))
        statements = Counter(sql for sql, _, _ in seen)
        for wanted in (
            "INSERT INTO obs_events",
            "INSERT INTO obs_flows",
            "UPDATE obs_flows SET",
            "INSERT INTO obs_lifecycle",
            "INSERT INTO obs_waits",  # the flows stopped midway wait at a step
        ):
            assert statements[wanted] == 1, (wanted, statements)
        hot = [(sql, raw, many) for sql, raw, many in seen if sql.split()[-1] in HOT]
        assert all(raw for _, raw, _ in hot), hot
        if url.startswith("postgresql"):
            assert not any(many for _, _, many in hot), hot
            assert not [s for s in statements if s.startswith("SELECT obs_events")], statements
        assert len((await queries.snapshot())["events"]) == len(records)


def _groups(
    chunk: Sequence[ConsumerRecord[bytes, bytes]],
) -> list[list[ConsumerRecord[bytes, bytes]]]:
    """A round's records split by topic: one flow's events fall in several groups."""
    by_topic: dict[str, list[ConsumerRecord[bytes, bytes]]] = defaultdict(list)
    for r in chunk:
        by_topic[r.topic].append(r)
    return list(by_topic.values())


async def test_batches_of_disjoint_partitions_applied_at_once_lose_no_update(
    two_postgres: tuple[str, str],
) -> None:
    """Four batches (one per topic, so each flow's events are in several) applied at once on
    four connections, round after round: the flows' row locks (``FOR UPDATE``, in one
    order) serialize the judgements of a flow, so the state is the one sequential feeding
    gives (without them two batches judge one flow from the same version and the later
    write loses the other's events)."""
    steps = steps_of(mix(30, outcomes=list(Outcome), seed=11, start=NOW))
    random.Random(2).shuffle(steps)
    records = as_records(steps)
    sequential, concurrent = two_postgres
    async with store_at(sequential) as (store, queries, _writer):
        await Fed(store).feed(records, batch=50)
        expected = semantic(await queries.snapshot())
    async with store_at(concurrent) as (store, queries, _writer):
        assert store.concurrent
        stored: dict[TopicPartition, int | None] = defaultdict(lambda: None)

        async def apply(group: list[ConsumerRecord[bytes, bytes]]) -> None:
            advance: dict[TopicPartition, Advance] = {}
            for r in group:
                tp = TopicPartition(r.topic, r.partition)
                advance[tp] = Advance(
                    advance[tp].expected if tp in advance else stored[tp], r.offset + 1
                )
            seen = [
                classify(r, lifecycle_types=LIFECYCLE_TYPES, payload_limit=16_384) for r in group
            ]
            await store.apply(seen, advance, micros(NOW))
            for tp, step in advance.items():
                stored[tp] = step.next

        for start in range(0, len(records), 24):
            await asyncio.gather(*(apply(g) for g in _groups(records[start : start + 24])))
        assert semantic(await queries.snapshot()) == expected


async def test_lifecycle_events_read_back_mark_their_outbox_rows_in_one_statement(url: str) -> None:
    """The observer's own lifecycle events, read back from Kafka, mark their outbox rows
    observed (an unsent row also sent) in one driver-level upsert per batch."""
    records = as_records(steps_of(mix(12, outcomes=list(Outcome), seed=6, start=NOW)))
    async with store_at(url) as (store, _queries, writer):
        await Fed(store).feed(records, batch=len(records))
        pending = await store.claim("test", micros(NOW), 60_000_000, 1_000)
        assert pending
        back = [
            record(
                "saga.lifecycle",
                value=p.payload.encode(),
                headers=encode_headers(
                    Envelope(
                        id=p.id,
                        source="/services/saga-observer",
                        type=p.type,
                        dataversion=1,
                        time=NOW,
                        correlation_id=p.correlation_id,
                        causation_id=p.caused_by,
                    )
                ),
                offset=offset,
            )
            for offset, p in enumerate(pending)
        ]
        seen: list[tuple[str, bool]] = []

        @event.listens_for(writer.sync_engine, "before_cursor_execute")
        def _count(_c: Any, _cur: Any, sql: str, _p: Any, context: Any, _many: bool) -> None:
            if "obs_lifecycle" in sql:
                seen.append((" ".join(sql.split()[:3]), context.compiled is None))

        await Fed(store).feed(back, batch=len(back))
        assert seen == [("INSERT INTO obs_lifecycle", True)]
        async with writer.connect() as conn:
            rows = (await conn.execute(select(lifecycle.c.observed, lifecycle.c.sent_us))).all()
        assert len(rows) == len(pending)
        assert all(observed and sent is not None for observed, sent in rows)
