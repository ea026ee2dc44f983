"""An outbox relay whose registry lacks a staged event's type says what to change, on every
round, and sends nothing after that row (rows go out in order) instead of skipping it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from choreokit.events import Event, OutboxRelayError, Publisher, Registry
from choreokit.events.sql import Outbox, OutboxRelay, create_tables
from choreokit.services.runtime.database import create_engine
from tests.support import FakeProducer, wait_for

OWN = Registry()


class Staged(Event, type="relay.staged", version=1, topic="relay-out", registry=OWN):
    n: int


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    db = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'outbox.sqlite3'}")
    await create_tables(db)
    yield db
    await db.dispose()


async def staged(engine: AsyncEngine, publisher: Publisher, count: int) -> Outbox:
    outbox = Outbox(engine, producer="stager")
    async with outbox.transaction() as conn:
        for n in range(count):
            await outbox.stage(conn, publisher.prepare(Staged(n=n)))
    return outbox


async def test_a_relay_on_the_wrong_registry_names_the_fix_and_sends_nothing(
    engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    producer = FakeProducer()
    publisher = Publisher(producer, source="/services/stager")
    outbox = await staged(engine, publisher, 2)
    relay = OutboxRelay(outbox, publisher)  # the default registry: it knows no relay.staged
    with pytest.raises(OutboxRelayError, match=r"registry=service\.registry") as caught:
        await relay.drain()
    assert caught.value.event_type == "relay.staged"
    assert producer.sent == []
    assert await relay.pending() == 2
    stop = asyncio.Event()
    with caplog.at_level(logging.ERROR, logger="choreokit.outbox"):
        running = asyncio.ensure_future(relay.run(stop))
        await wait_for(
            lambda: any("cannot rebuild row" in r.getMessage() for r in caplog.records),
            timeout=10,
            what="the relay's round to log the fix",
        )
        stop.set()
        outbox.notify()
        await running
    assert producer.sent == []


async def test_the_relay_on_the_services_registry_sends_every_row_in_order(
    engine: AsyncEngine,
) -> None:
    producer = FakeProducer()
    publisher = Publisher(producer, source="/services/stager")
    outbox = await staged(engine, publisher, 3)
    assert await OutboxRelay(outbox, publisher, registry=OWN).drain() == 3
    assert [s.topic for s in producer.sent] == ["relay-out"] * 3
