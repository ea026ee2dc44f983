"""crash_mid_handler: a service with an inbox, in its own process, is SIGKILLed five times at
seeded random points of a 10,000-event stream over 8 partitions and started again each time.

Nothing is lost and no effect happens twice (one ``chaos_effects`` row and one
``item.seen`` id per flow), though the crashes do redeliver events: the same
``ce_id`` finished twice at the handler side, each repeat answered by the inbox
from what it recorded. On the three-node Apache Kafka and on the embedded broker.
The figures are printed; run with ``-s`` to see them.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import pytest
from sqlalchemy import distinct, func, select

from choreokit.events import KafkaSettings, Service
from tests.chaos.checker import check_topics, redeliveries
from tests.chaos.inbox_member import effects, prepare
from tests.chaos.processes import Member, Stage, stage
from tests.support import catalog, unique, wait_for

SEED = 20261201
EVENTS = 10_000
PARTITIONS = 8
KILLS = 5
WINDOW = 200
"""Publishes in flight at once."""


@pytest.fixture(params=["tansu", "kafka"])
def where(request: pytest.FixtureRequest) -> Stage:
    return stage(request)


async def count_effects(db: str) -> tuple[int, int]:
    """Rows of ``chaos_effects``, and distinct flows among them."""
    engine = await prepare(db)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(select(func.count()).select_from(effects))).scalar_one()
            flows = (await conn.execute(select(func.count(distinct(effects.c.flow))))).scalar_one()
        return int(rows), int(flows)
    finally:
        await engine.dispose()


async def test_a_service_killed_five_times_mid_stream_loses_nothing_and_repeats_no_effect(
    where: Stage, tmp_path: Path
) -> None:
    """10,000 events, 8 partitions, 5 SIGKILLs at seeded points (counts of deliveries finished)
    → 0 lost, 0 duplicated effects (topics and database), at least 1 redelivery."""
    rng, stretch = random.Random(SEED), EVENTS // KILLS
    # One kill in each fifth of the stream, at a seeded point of it.
    kill_points = [rng.randrange(k * stretch + 200, (k + 1) * stretch - 200) for k in range(KILLS)]
    prefix, group = unique("crash"), unique("crash-group")
    cat = catalog(prefix)
    db = f"sqlite:///{tmp_path / 'inbox.sqlite3'}"
    log = tmp_path / "members.log"
    settings = KafkaSettings(
        bootstrap=where.bootstrap, topic_partitions=PARTITIONS, topic_replication=where.replication
    )
    flows = [f"flow-{n}" for n in range(EVENTS)]
    sent: set[str] = set()

    def member() -> Member:
        return Member(
            where.bootstrap,
            prefix=prefix,
            group=group,
            db=db,
            partitions=PARTITIONS,
            replication=where.replication,
            log=log,
        )

    members = [member()]

    def finished() -> int:
        """Deliveries finished by every process so far (repeats included)."""
        members[-1].drain()
        return sum(len(m.handled) for m in members)

    def handled() -> set[str]:
        members[-1].drain()
        return {event_id for m in members for event_id in m.handled}

    feeder = Service(unique("feeder"), registry=cat.registry, settings=settings, publishes=[cat.v2])

    async def feed() -> None:
        for start in range(0, EVENTS, WINDOW):
            envelopes = await asyncio.gather(
                *(
                    feeder.publish(cat.v2(n=n, label="x"), correlation_id=flows[n])
                    for n in range(start, start + WINDOW)
                )
            )
            sent.update(e.id for e in envelopes)

    began = time.monotonic()
    restarts: list[float] = []
    try:
        async with feeder:
            await wait_for(
                lambda: finished() >= 0 and members[-1].started,
                timeout=60,
                what="the first member to start",
            )
            feeding = asyncio.create_task(feed())
            for point in kill_points:
                await wait_for(
                    lambda point=point: finished() >= point,  # type: ignore[misc]
                    timeout=120,
                    what=f"{point} deliveries finished before a kill",
                )
                members[-1].kill()
                killed_at, before = time.monotonic(), finished()
                members.append(member())
                await wait_for(
                    lambda before=before: finished() > before,  # type: ignore[misc]
                    timeout=60,
                    what="the restarted member to finish a delivery",
                )
                restarts.append(time.monotonic() - killed_at)
            await feeding
            await wait_for(lambda: handled() >= sent, timeout=120, what="every event to be handled")
        assert members[-1].terminate() == 0
    finally:
        for m in members:
            if m.running:
                m.kill()
    elapsed = time.monotonic() - began

    report = await check_topics(
        where.bootstrap,
        [cat.topic, cat.out_topic],
        until=where.until,
        expected_flows=flows,
        expected_ids=sent,
        expected_effects={"item.seen"},
        effect_types={"item.seen"},
        terminal_types={"item.seen"},
    )
    repeated = redeliveries(event_id for m in members for event_id in m.handled)
    rows, effect_flows = await count_effects(db)
    report.print(f"crash_mid_handler[{where.engine}]")
    print(
        f"  {len(sent)} events, {KILLS} SIGKILLs after {kill_points} deliveries; "
        f"{finished()} deliveries finished, {len(repeated)} ids redelivered "
        f"({sum(repeated.values()) - len(repeated)} repeats); effect rows {rows} "
        f"for {effect_flows} flows; first delivery after a restart in "
        f"{min(restarts):.1f}-{max(restarts):.1f}s; {elapsed:.1f}s in all"
    )
    assert len(sent) == EVENTS
    report.assert_clean()
    assert rows == effect_flows == EVENTS, "an effect was written twice (or not at all)"
    assert len(repeated) >= 1, "no crash redelivered anything: the kills did not land mid-batch"
