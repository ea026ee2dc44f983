"""Business keys belong to the flow that created them, on SQLite and PostgreSQL.

The consumer path is the real one (dispatcher, Inbox middleware, handler
transaction) with the producer in memory: no broker is needed to pin what the
binding does to a service's state.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import Column, MetaData, String, Table, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from choreokit.events import (
    ConfigurationError,
    Event,
    KeyConflictError,
    Publisher,
    Registry,
    RetryPolicy,
    UnknownTypePolicy,
)
from choreokit.events._batch import BatchProcessor
from choreokit.events._consumer import ConsumerStats, Dispatcher
from choreokit.events._handling import HandlerSpec
from choreokit.events.sql import Inbox, KeyBindings, bind_key, create_tables, transaction
from choreokit.services.runtime.database import create_engine
from tests.support import FakeConsumer, FakeProducer, event_record

reg = Registry()


class Cancel(Event, type="cancel", version=1, topic="orders", registry=reg):
    order_id: str


state = MetaData()
cancelled = Table("cancelled", state, Column("order_id", String(64), primary_key=True))


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    db = create_engine(database_url)
    await create_tables(db)
    async with db.begin() as conn:
        await conn.run_sync(state.create_all)
    yield db
    await db.dispose()


def consumer_of(engine: AsyncEngine) -> tuple[BatchProcessor, FakeProducer]:
    async def cancel(event: Cancel) -> None:
        await bind_key("order", event.order_id)
        await transaction().execute(insert(cancelled).values(order_id=event.order_id))

    producer = FakeProducer()
    publisher = Publisher(producer, source="/services/inventory")
    inbox = Inbox(engine, consumer="inventory", registry=reg)
    spec = HandlerSpec(name="cancel", model=Cancel, fn=cancel, takes_context=False)
    dispatcher = Dispatcher(
        routes={"orders": {"cancel": spec}},
        registry=reg,
        group="inventory",
        publisher=publisher,
        middlewares=[inbox],
        retry=RetryPolicy(max_attempts=3, first_backoff=timedelta(0), jitter=0),
        unknown_types=UnknownTypePolicy.DEAD_LETTER,
        stats=ConsumerStats(),
    )
    return BatchProcessor(dispatcher), producer


async def cancelled_orders(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        return list((await conn.execute(select(cancelled.c.order_id))).scalars())


async def test_an_event_of_another_flow_naming_a_bound_key_is_refused_and_not_applied(
    engine: AsyncEngine,
) -> None:
    async with engine.begin() as conn:
        await KeyBindings(consumer="inventory").bind(conn, "order", "o-1", "customer-flow")
    processor, producer = consumer_of(engine)
    foreign = event_record(Cancel(order_id="o-1"), correlation_id="acme:attacker-flow")
    assert await processor.process([foreign], FakeConsumer())
    assert await cancelled_orders(engine) == []
    [dead] = producer.to("orders.dlq")
    assert dead.header("choreo_dlq_error_type") == "KeyConflictError"
    assert dead.header("choreo_dlq_attempts") == "1"  # permanent: never retried
    own = event_record(Cancel(order_id="o-1"), correlation_id="customer-flow", offset=1)
    assert await processor.process([own], FakeConsumer())
    assert await cancelled_orders(engine) == ["o-1"]


async def test_the_first_flow_to_name_a_free_key_owns_it(engine: AsyncEngine) -> None:
    processor, producer = consumer_of(engine)
    first = event_record(Cancel(order_id="o-2"), correlation_id="flow-a")
    second = event_record(Cancel(order_id="o-2"), correlation_id="flow-b", offset=1)
    assert await processor.process([first, second], FakeConsumer())
    async with engine.connect() as conn:
        assert await KeyBindings(consumer="inventory").owner(conn, "order", "o-2") == "flow-a"
    assert len(producer.to("orders.dlq")) == 1


async def test_bindings_are_per_consumer_and_per_kind(engine: AsyncEngine) -> None:
    inventory, payments = KeyBindings(consumer="inventory"), KeyBindings(consumer="payments")
    async with engine.begin() as conn:
        await inventory.bind(conn, "order", "o-3", "flow-a")
        await payments.bind(conn, "order", "o-3", "flow-b")
        await inventory.bind(conn, "customer", "o-3", "flow-c")
        await inventory.bind(conn, "order", "o-3", "flow-a")  # again, same flow: fine
    async with engine.begin() as conn:
        with pytest.raises(KeyConflictError) as caught:
            await inventory.bind(conn, "order", "o-3", "flow-b")
    assert caught.value.owner == "flow-a"
    assert caught.value.correlation_id == "flow-b"


async def test_two_flows_racing_for_a_free_key_cannot_both_win(
    engine: AsyncEngine, database_url: str
) -> None:
    if database_url.startswith("sqlite"):
        pytest.skip(reason="SQLite has one writer: transactions cannot overlap there")
    bindings = KeyBindings(consumer="inventory")
    outcomes: list[str] = []

    async def claim(flow: str) -> None:
        try:
            async with engine.begin() as conn:
                await bindings.bind(conn, "order", "o-race", flow)
                await asyncio.sleep(0)  # noqa: sleep-ok - yields once so the other transaction inserts too
            outcomes.append(flow)
        except KeyConflictError:
            outcomes.append("refused")

    await asyncio.gather(*(claim(f"flow-{n}") for n in range(4)))
    assert outcomes.count("refused") == 3
    async with engine.connect() as conn:
        owner = await bindings.owner(conn, "order", "o-race")
    assert owner in outcomes


async def test_bind_key_outside_a_handler_says_what_to_use() -> None:
    with pytest.raises(ConfigurationError, match="KeyBindings"):
        await bind_key("order", "o-4")
