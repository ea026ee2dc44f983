"""``db_pause``: PostgreSQL frozen (SIGSTOP) for 20 s under a service with an inbox.

A service consumes a stream through the inbox (``choreokit.events.sql.Inbox``): each
event's effect row and its inbox record commit in one PostgreSQL transaction, then its
output event is sent, then its offset may be committed. Mid-stream the whole server (the
postmaster and every backend) is stopped for 20 s while the stream goes on arriving.

What is pinned:

* **no offset committed ahead of a durable effect**: the group's committed offsets, read
  from Kafka several times while the server is frozen, cover only records whose inbox
  record (and effect row) had committed before the pause; PostgreSQL's commit timestamps
  (``track_commit_timestamp``) tell those from the ones committed after it resumed;
* **0 lost after it resumes**, 0 duplicated effects (the checker reads both topics end to
  end, and the effects table has one row per event);
* the service does not die: it waits on the database the whole time (no timeout is
  configured), keeps its group membership, and goes on once the server is back.

The server paused is one this run started (tests/chaos/postgres.py): scripts/postgres'
own, or a private one started here. The figures are printed; run with ``-s`` to see them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import Column, Integer, MetaData, String, Table, insert
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from choreokit.events import HandlerContext, KafkaSettings, Service
from choreokit.events.sql import Inbox, create_tables, transaction
from choreokit.services.runtime import KafkaCluster
from choreokit.services.runtime.database import create_engine
from tests.chaos.checker import Seen, check_topics, read_topics
from tests.chaos.postgres import NoPostgresError, OwnedPostgres, run_server, start_private
from tests.integration.kafka_io import end_offsets
from tests.support import catalog, unique, wait_for

EVENTS = 1_200
BEFORE = 400
"""Events published before the pause; the rest arrive while the server is frozen."""
PAUSE_AFTER = 150
"""Events handled before the server is frozen."""
PAUSE = 20.0
"""Seconds the server stays frozen."""
LOOKS = (1.0, 10.0, 19.0)
"""Seconds into the pause at which the group's committed offsets are read."""
WINDOW = 50

business = MetaData()
effects = Table(
    "effects",
    business,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("n", Integer, nullable=False),
    Column("event_id", String(64), nullable=False),
)


@pytest.fixture(scope="module")
def server() -> Iterator[OwnedPostgres]:
    """A PostgreSQL server this run owns and that records commit timestamps.

    The run's own (scripts/postgres) when ``CHOREO_TEST_POSTGRES_URL`` names it, else a
    private one for this module; never a server the run found running.
    """
    owned = run_server()
    if owned is None or not asyncio.run(_tracks_commit_times(owned.url)):
        try:
            owned = start_private()
        except NoPostgresError as exc:
            pytest.fail(str(exc))
    try:
        yield owned
    finally:
        owned.close()  # resumes it whatever happened; stops it if it is private


async def _tracks_commit_times(url: str) -> bool:
    try:
        conn = await asyncpg.connect(url, timeout=10)
    except (OSError, asyncpg.PostgresError):
        return False
    try:
        return bool(await conn.fetchval("SHOW track_commit_timestamp") == "on")
    finally:
        await conn.close()


@pytest.fixture
async def database(server: OwnedPostgres) -> AsyncIterator[str]:
    """A fresh database on the owned server, dropped afterwards."""
    name = f"choreo_pause_{unique('')}"
    admin = await asyncpg.connect(server.url, timeout=10)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield make_url(server.url).set(database=name).render_as_string(hide_password=False)
    server.resume()
    admin = await asyncpg.connect(server.url, timeout=10)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@dataclass
class Look:
    """The group's committed offsets, read at ``at`` seconds into the pause."""

    at: float
    committed: dict[int, int]
    ends: dict[int, int]


@dataclass
class Figures:
    handler_calls: int = 0
    handled_at_pause: int = 0
    looks: list[Look] = field(default_factory=list)
    paused_pids: int = 0
    resumed_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    caught_up: float = 0.0


async def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """The group's committed offset per partition of ``topic`` (absent: none committed)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic}


async def commit_times(url: str, consumer: str) -> dict[str, datetime]:
    """Each inbox record's event id and when its transaction committed."""
    conn = await asyncpg.connect(url, timeout=10)
    try:
        rows = await conn.fetch(
            "SELECT event_id, pg_xact_commit_timestamp(xmin) AS committed_at "
            "FROM choreo_inbox WHERE consumer = $1",
            consumer,
        )
        effect_ids = [r["event_id"] for r in await conn.fetch("SELECT event_id FROM effects")]
    finally:
        await conn.close()
    found = {r["event_id"]: r["committed_at"] for r in rows}
    assert len(effect_ids) == len(set(effect_ids)), "an event's effect applied twice"
    assert set(found) == set(effect_ids), "an inbox record without its effect row, or the reverse"
    return found


def ahead_of_effects(
    look: Look, records: list[Seen], committed_at: dict[str, datetime], resumed: datetime
) -> list[Seen]:
    """Records below ``look``'s committed offsets whose effect was not durable during the pause."""
    return [
        seen
        for seen in records
        if seen.offset < look.committed.get(seen.partition, 0)
        and not (seen.id in committed_at and committed_at[seen.id] < resumed)
    ]


async def test_a_frozen_database_lets_no_offset_run_ahead_and_loses_nothing(
    kafka_broker: KafkaCluster, database: str, server: OwnedPostgres
) -> None:
    bootstrap = kafka_broker.bootstrap
    settings = KafkaSettings(bootstrap=bootstrap)
    cat = catalog()
    figures = Figures()
    engine: AsyncEngine = create_engine(database)
    await create_tables(engine)
    async with engine.begin() as conn:
        await conn.run_sync(business.create_all)

    service = Service(
        unique("inboxed"), registry=cat.registry, settings=settings, publishes=[cat.out]
    )
    service.use(Inbox(engine, consumer=service.name, registry=cat.registry))

    @service.handler(cat.v2)
    async def apply(event: object, ctx: HandlerContext) -> None:
        figures.handler_calls += 1
        n = event.n  # type: ignore[attr-defined]
        await transaction().execute(insert(effects).values(n=n, event_id=ctx.envelope.id))
        await ctx.publish(cat.out(n=n))

    feeder = Service(unique("feeder"), registry=cat.registry, settings=settings, publishes=[cat.v2])

    async def feed(numbers: range) -> None:
        for start in range(numbers.start, numbers.stop, WINDOW):
            await asyncio.gather(
                *(
                    feeder.publish(cat.v2(n=n, label="x"), correlation_id=f"flow-{n}")
                    for n in range(start, min(start + WINDOW, numbers.stop))
                )
            )

    try:
        async with service, feeder:
            await feed(range(BEFORE))
            await wait_for(
                lambda: service.stats.handled >= PAUSE_AFTER, timeout=60, what="the first events"
            )
            figures.handled_at_pause = service.stats.handled
            figures.paused_pids = len(server.pause())
            paused_at = time.monotonic()
            try:
                await feed(range(BEFORE, EVENTS))  # Kafka is up: the stream goes on arriving
                for at in LOOKS:
                    await asyncio.sleep(max(0.0, paused_at + at - time.monotonic()))  # noqa: sleep-ok - the fault's own timing
                    figures.looks.append(
                        Look(
                            time.monotonic() - paused_at,
                            await committed_offsets(bootstrap, service.name, cat.topic),
                            await end_offsets(bootstrap, cat.topic),
                        )
                    )
                await asyncio.sleep(max(0.0, paused_at + PAUSE - time.monotonic()))  # noqa: sleep-ok - the fault's own timing
            finally:
                figures.resumed_at = datetime.now(UTC)
                server.resume()
            resumed = time.monotonic()
            await wait_for(
                lambda: service.stats.handled >= EVENTS, timeout=120, what="every event handled"
            )
            ends = await end_offsets(bootstrap, cat.topic)

            async def caught_up() -> bool:
                return await committed_offsets(bootstrap, service.name, cat.topic) == ends

            deadline = time.monotonic() + 60
            while not await caught_up():
                assert time.monotonic() < deadline, "the group's commits never reached the end"
                await asyncio.sleep(0.2)  # noqa: sleep-ok - polls the broker between looks
            figures.caught_up = time.monotonic() - resumed
            assert service.healthy(), service.health()
    finally:
        server.resume()
        await engine.dispose()

    committed_at = await commit_times(database, service.name)
    records = [s for s in await read_topics(bootstrap, [cat.topic]) if s.topic == cat.topic]
    resumed_at = figures.resumed_at
    ahead = [ahead_of_effects(look, records, committed_at, resumed_at) for look in figures.looks]
    durable_at_pause = sum(1 for t in committed_at.values() if t < figures.resumed_at)
    report = await check_topics(
        bootstrap,
        [cat.topic, cat.out_topic],
        expected_flows=[f"flow-{n}" for n in range(EVENTS)],
        effect_types={"item.seen"},
        expected_effects={"item.seen"},
        terminal_types={"item.seen"},
    )
    report.print("db_pause")
    for look, found in zip(figures.looks, ahead, strict=True):
        lag = sum(look.ends.values()) - sum(look.committed.values())
        print(
            f"  {look.at:5.1f}s into the pause: {sum(look.committed.values())} offsets committed, "
            f"lag {lag}, committed ahead of a durable effect {len(found)}"
        )
    print(
        f"  {'a private server' if server.private else 'the run server'} frozen {PAUSE:.0f}s "
        f"({figures.paused_pids} processes) after "
        f"{figures.handled_at_pause} events; effects durable before it resumed "
        f"{durable_at_pause}; {EVENTS} events, {figures.handler_calls} handler calls, "
        f"{len(committed_at)} inbox records; commits caught up {figures.caught_up:.1f}s "
        "after it resumed; the service stayed up"
    )

    assert all(not found for found in ahead), [f[:3] for f in ahead]
    # The pause bit: while frozen, the group was behind the stream and did not move on.
    assert all(sum(look.ends.values()) > sum(look.committed.values()) for look in figures.looks)
    assert figures.looks[-1].committed == figures.looks[1].committed
    assert len(committed_at) == EVENTS  # one inbox record (and one effect row) per event
    report.assert_clean()
