"""rebalance_storm: three members of one group, each an OS process with an inbox on one
PostgreSQL, while one member leaves (SIGTERM: it commits and leaves the group) or joins every
5 s for 60 s, seeded, under a steady stream of events over 8 partitions.

Every rebalance moves partitions between members in the middle of their batches; nothing is
lost and no effect happens twice (one ``chaos_effects`` row and one ``item.seen`` id per
flow). The figures are printed; run with ``-s`` to see them.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import pytest

from choreokit.events import KafkaSettings, Service
from tests.chaos.checker import check_topics, redeliveries
from tests.chaos.inbox_member import prepare
from tests.chaos.processes import Member, Stage, count_effects, stage
from tests.support import catalog, unique, wait_for

SEED = 20261202
MEMBERS = 3
PARTITIONS = 8
STORM = {"kafka": 60.0, "tansu": 30.0}
"""Seconds the storm lasts: the issue's 60 on Apache Kafka; half on the embedded broker,
which takes it as well, to keep the suite's time."""
EVERY = 5.0
"""Seconds between two membership changes."""
RATE = 100
"""Events published per second, all through the storm."""
WINDOW = 20
"""Events published at once, every ``WINDOW / RATE`` seconds."""


@pytest.fixture(params=["tansu", "kafka"])
def where(request: pytest.FixtureRequest) -> Stage:
    return stage(request)


def storm_plan(rng: random.Random, changes: int) -> list[str]:
    """``join`` or ``leave`` for each change: from three members, between one and three."""
    plan, running = [], MEMBERS
    for _ in range(changes):
        if running == MEMBERS:
            step = "leave"
        elif running == 1:
            step = "join"
        else:
            step = rng.choice(["join", "leave"])
        running += 1 if step == "join" else -1
        plan.append(step)
    return plan


async def test_members_joining_and_leaving_every_5s_for_60s_lose_and_repeat_nothing(
    where: Stage, postgres_url: str, tmp_path: Path
) -> None:
    """3 members, a join or a leave every 5 s for 60 s (30 s on Tansu; seeded) under 100 events/s
    → 0 lost, 0 duplicated effects (topics and database)."""
    rng = random.Random(SEED)
    changes = int(STORM[where.engine] / EVERY)
    plan = storm_plan(rng, changes)
    prefix, group = unique("storm"), unique("storm-group")
    cat = catalog(prefix)
    settings = KafkaSettings(
        bootstrap=where.bootstrap, topic_partitions=PARTITIONS, topic_replication=where.replication
    )

    def member(n: int) -> Member:
        return Member(
            where.bootstrap,
            prefix=prefix,
            group=group,
            db=postgres_url,
            partitions=PARTITIONS,
            replication=where.replication,
            log=tmp_path / f"member-{n}.log",
        )

    # Tables made once: three processes creating them at once on PostgreSQL would race.
    await (await prepare(postgres_url)).dispose()
    everyone = [member(n) for n in range(MEMBERS)]
    running = list(everyone)
    sent: dict[str, str] = {}
    """ce_id → flow of every event the feeder had acknowledged."""

    def handled() -> set[str]:
        for m in running:
            m.drain()
        return {event_id for m in everyone for event_id in m.handled}

    feeder = Service(unique("feeder"), registry=cat.registry, settings=settings, publishes=[cat.v2])
    storming = asyncio.Event()

    async def feed() -> None:
        n = 0
        while not storming.is_set():
            flows = [f"flow-{n + k}" for k in range(WINDOW)]
            envelopes = await asyncio.gather(
                *(
                    feeder.publish(cat.v2(n=n + k, label="storm"), correlation_id=flow)
                    for k, flow in enumerate(flows)
                )
            )
            sent.update((e.id, e.correlation_id) for e in envelopes)
            n += WINDOW
            await asyncio.sleep(WINDOW / RATE)  # noqa: sleep-ok - paces the stream

    joins = leaves = 0
    began = time.monotonic()
    try:
        async with feeder:

            def all_started() -> bool:
                return all(m.is_up() for m in running)

            await wait_for(all_started, timeout=60, what="the three members to start")
            feeding = asyncio.create_task(feed())
            storm_began = time.monotonic()
            for k, step in enumerate(plan, start=1):
                due = storm_began + k * EVERY - time.monotonic()
                await asyncio.sleep(max(0.0, due))  # noqa: sleep-ok - the storm's clock
                if step == "leave":
                    # A member leaves a group it is in: one that joined 5 s ago has started.
                    await wait_for(all_started, what="the last joiner to start")
                    leaving = running.pop(rng.randrange(len(running)))
                    assert leaving.terminate() == 0, f"member {leaving.pid} did not stop cleanly"
                    leaves += 1
                else:
                    joining = member(len(everyone))
                    everyone.append(joining)
                    running.append(joining)
                    joins += 1
            storm_ended = time.monotonic()
            storming.set()
            await feeding
            await wait_for(
                lambda: handled() >= sent.keys(), timeout=120, what="every event to be handled"
            )
            drained = time.monotonic()
            await wait_for(all_started, what="the last joiner to start")
        for m in running:
            assert m.terminate() == 0, f"member {m.pid} did not stop cleanly"
    finally:
        for m in everyone:
            if m.running:
                m.kill()

    report = await check_topics(
        where.bootstrap,
        [cat.topic, cat.out_topic],
        until=where.until,
        expected_flows=set(sent.values()),
        expected_ids=sent.keys(),
        expected_effects={"item.seen"},
        effect_types={"item.seen"},
        terminal_types={"item.seen"},
    )
    repeated = redeliveries(event_id for m in everyone for event_id in m.handled)
    rows, effect_flows = await count_effects(postgres_url)
    assignments = sum(m.assignments for m in everyone)
    report.print(f"rebalance_storm[{where.engine}]")
    print(
        f"  {len(sent)} events in {storm_ended - storm_began:.1f}s of storm: {joins} joins, "
        f"{leaves} leaves ({len(everyone)} member processes, plan {''.join(s[0] for s in plan)}); "
        f"{assignments} assignments; {len(repeated)} ids redelivered; "
        f"effect rows {rows} for {effect_flows} flows; "
        f"drained {drained - storm_ended:.1f}s after the storm; "
        f"{time.monotonic() - began:.1f}s in all"
    )
    report.assert_clean()
    assert rows == effect_flows == len(sent), "an effect was written twice (or not at all)"
    assert joins + leaves == changes
    # Each change rebalanced the group: the survivors (and a joiner) were assigned again.
    assert assignments >= MEMBERS + changes, "the storm did not rebalance the group"
