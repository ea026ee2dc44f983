"""The inbox and the outbox on SQLite and PostgreSQL, with the real broker."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from choreokit.events import HandlerContext, KafkaSettings, Service, encode_headers
from choreokit.events.sql import Inbox, Outbox, OutboxRelay, create_tables, transaction
from choreokit.services.runtime.database import create_engine
from tests.integration.kafka_io import end_offsets, headers_of, produce_raw, read_topic
from tests.support import catalog, envelope_for, unique, wait_for

pytestmark = pytest.mark.engines("tansu", "kafka")

business = MetaData()
effects = Table(
    "effects",
    business,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("n", Integer, nullable=False),
    Column("note", String(64), nullable=False),
)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    db = create_engine(database_url)
    await create_tables(db)
    async with db.begin() as conn:
        await conn.run_sync(business.create_all)
    yield db
    await db.dispose()


async def count_effects(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(effects))).scalar_one())


async def test_a_redelivered_event_changes_state_once_and_replays_its_outputs(
    kafka: KafkaSettings, engine: AsyncEngine
) -> None:
    cat = catalog()
    runs: list[int] = []
    service = Service(unique("inboxed"), registry=cat.registry, settings=kafka, publishes=[cat.out])
    inbox = Inbox(engine, consumer=service.name, registry=cat.registry)
    service.use(inbox)

    @service.handler(cat.v2)
    async def handle(event: object, ctx: HandlerContext) -> None:
        runs.append(event.n)  # type: ignore[attr-defined]
        await transaction().execute(insert(effects).values(n=event.n, note="first"))  # type: ignore[attr-defined]
        await ctx.publish(cat.out(n=event.n))  # type: ignore[attr-defined]

    event = cat.v2(n=1, label="x")
    record = (b"flow", event.model_dump_json().encode(), encode_headers(envelope_for(event)))
    async with service:
        await produce_raw(kafka.bootstrap, cat.topic, [record, record, record])
        await wait_for(lambda: service.stats.handled == 3, what="three deliveries")

    assert runs == [1]
    assert inbox.duplicates == 2
    assert await count_effects(engine) == 1
    outputs = await read_topic(kafka.bootstrap, cat.out_topic, 3)
    assert len({headers_of(r)["ce_id"] for r in outputs}) == 1
    assert {r.value for r in outputs} == {b'{"n":1}'}


async def test_a_failed_attempt_leaves_no_trace_in_the_database(
    kafka: KafkaSettings, engine: AsyncEngine
) -> None:
    cat = catalog()
    service = Service(unique("atomic"), registry=cat.registry, settings=kafka)
    service.use(Inbox(engine, consumer=service.name, registry=cat.registry))
    attempts: list[int] = []

    @service.handler(cat.v2)
    async def handle(event: object, ctx: HandlerContext) -> None:
        attempts.append(ctx.attempt)
        await transaction().execute(insert(effects).values(n=ctx.attempt, note="attempt"))
        if ctx.attempt == 1:
            raise ConnectionError("lost the database mid-way")

    event = cat.v2(n=5, label="x")
    async with service:
        await produce_raw(
            kafka.bootstrap,
            cat.topic,
            [(b"f", event.model_dump_json().encode(), encode_headers(envelope_for(event)))],
        )
        await wait_for(lambda: service.stats.handled == 1, what="the retried delivery")
    assert attempts == [1, 2]
    async with engine.connect() as conn:
        rows = (await conn.execute(select(effects.c.n))).scalars().all()
    assert rows == [2]


async def test_transaction_outside_an_inbox_says_what_to_do() -> None:
    from choreokit.events import ConfigurationError

    with pytest.raises(ConfigurationError, match=r"use events\.sql\.Inbox"):
        transaction()


async def test_the_outbox_sends_what_committed_and_nothing_else(
    kafka: KafkaSettings, engine: AsyncEngine
) -> None:
    cat = catalog()
    service = Service(
        unique("outboxed"), registry=cat.registry, settings=kafka, publishes=[cat.out]
    )
    outbox = Outbox(engine, producer=service.name)
    async with service:
        relay = OutboxRelay(outbox, service.publisher, registry=cat.registry)
        async with outbox.transaction() as conn:
            await conn.execute(insert(effects).values(n=1, note="kept"))
            await outbox.stage(conn, service.publisher.prepare(cat.out(n=1)))

        async def failing_change() -> None:
            async with outbox.transaction() as conn:
                await conn.execute(insert(effects).values(n=2, note="rolled back"))
                await outbox.stage(conn, service.publisher.prepare(cat.out(n=2)))
                raise RuntimeError("the business change failed")

        with pytest.raises(RuntimeError):
            await failing_change()
        assert await relay.pending() == 1
        assert await relay.drain() == 1
        assert await relay.drain() == 0
        assert await relay.pending() == 0
    [record] = await read_topic(kafka.bootstrap, cat.out_topic, 1)
    assert record.value == b'{"n":1}'
    assert sum((await end_offsets(kafka.bootstrap, cat.out_topic)).values()) == 1
    assert await count_effects(engine) == 1


async def test_the_relay_keeps_staging_order_within_a_flow(
    kafka: KafkaSettings, engine: AsyncEngine
) -> None:
    cat = catalog()
    service = Service(unique("ordered"), registry=cat.registry, settings=kafka, publishes=[cat.out])
    outbox = Outbox(engine, producer=service.name)
    async with service:
        for n in range(30):
            async with outbox.transaction() as conn:
                await outbox.stage(
                    conn, service.publisher.prepare(cat.out(n=n), correlation_id="one-flow")
                )
        relay = OutboxRelay(outbox, service.publisher, registry=cat.registry, batch=7)
        sent = 0
        while True:
            step = await relay.drain()
            if not step:
                break
            sent += step
    assert sent == 30
    records = await read_topic(kafka.bootstrap, cat.out_topic, 30)
    assert [int(r.value.decode().split(":")[1].rstrip("}")) for r in records] == list(range(30))
