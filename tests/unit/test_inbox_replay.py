"""The inbox's replay of a redelivered event: through the service's own registry by default,
and never a silent replay of nothing when its registry lacks a recorded event's type."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from choreokit.events import Event, HandlerContext, InboxReplayError, Registry, Service
from choreokit.events.sql import Inbox, create_tables, metadata
from choreokit.services.runtime.database import create_engine
from choreokit.testing import ServiceKit

OWN = Registry()
"""The service's own registry: the default registry knows none of these types."""


class Asked(Event, type="replay.asked", version=1, topic="replay-in", registry=OWN):
    n: int


class Answered(Event, type="replay.answered", version=1, topic="replay-out", registry=OWN):
    n: int


OTHER = Registry()
"""A registry that knows the handled type but not what the handler publishes."""
OTHER.register(Asked)


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    db = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'inbox.sqlite3'}")
    await create_tables(db)
    yield db
    await db.dispose()


def answering(engine: AsyncEngine, inbox_registry: Registry | None) -> tuple[Service, Inbox]:
    service = Service("replayer", registry=OWN, publishes=[Answered])
    inbox = Inbox(engine, consumer=service.name, registry=inbox_registry)
    service.use(inbox)

    @service.handler(Asked)
    async def answer(event: Asked, ctx: HandlerContext) -> None:
        await ctx.publish(Answered(n=event.n))

    return service, inbox


async def recorded(engine: AsyncEngine) -> int:
    table = metadata.tables["choreo_inbox"]
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


async def test_an_inbox_without_a_registry_replays_through_its_services_own(
    engine: AsyncEngine,
) -> None:
    service, inbox = answering(engine, None)
    async with ServiceKit(service) as kit:
        first = await kit.deliver(Asked(n=1), event_id="evt-1")
        again = await kit.deliver(Asked(n=1), event_id="evt-1")
    assert inbox.duplicates == 1
    assert again.dead_letters == ()
    assert [p.envelope.id for p in again.published] == [p.envelope.id for p in first.published]
    assert again.events(Answered) == [Answered(n=1)]


async def test_an_inbox_refuses_to_record_an_event_its_registry_could_not_replay(
    engine: AsyncEngine,
) -> None:
    service, _ = answering(engine, OTHER)
    async with ServiceKit(service) as kit:
        handled = await kit.deliver(Asked(n=1), event_id="evt-1")
    assert handled.published == ()
    (dead,) = handled.dead_letters
    assert dead.error_type == "InboxReplayError"
    assert "'replay.answered'" in dead.error_message
    assert "registry=service.registry" in dead.error_message
    assert await recorded(engine) == 0  # rolled back with the handling


async def test_a_redelivery_whose_recorded_type_is_unknown_fails_loudly_and_sends_nothing(
    engine: AsyncEngine,
) -> None:
    """A record written before (by an inbox that knew the type) meets one that does not."""
    service, _ = answering(engine, None)
    async with ServiceKit(service) as kit:
        await kit.deliver(Asked(n=1), event_id="evt-1")
    assert await recorded(engine) == 1
    service, inbox = answering(engine, OTHER)
    async with ServiceKit(service) as kit:
        again = await kit.deliver(Asked(n=1), event_id="evt-1")
    assert inbox.duplicates == 1
    assert again.published == ()
    (dead,) = again.dead_letters
    assert dead.error_type == "InboxReplayError"
    assert "does not know type 'replay.answered'" in dead.error_message


def test_the_error_names_the_type_and_the_version_and_stays_a_configuration_error() -> None:
    error = InboxReplayError("payments", "evt-9", "payment.authorized", 3)
    assert "payment.authorized v3" in str(error)
    assert "dead-letter topic" in str(error)
    assert (error.consumer, error.event_id, error.version) == ("payments", "evt-9", 3)
    assert not error.retriable
