"""A three-node Apache Kafka loses a broker (SIGKILL) under a stream of 20,000 events through two
handler hops, and gets it back: nothing is lost and no effect is produced twice.

The figures (sent, handled, the checker's lost / duplicated effects / order
violations / unended flows, time to recover) are printed; run with ``-s`` to see them.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.client import AIOKafkaClient

from choreokit.events import Event, HandlerContext, KafkaSettings, PublishError, Registry, Service
from choreokit.services.runtime import KafkaCluster, KafkaNode, brokers_in_metadata
from tests.chaos.checker import check_topics
from tests.integration.kafka_io import end_offsets
from tests.support import catalog, unique, wait_for

EVENTS = 20_000
KILL_AFTER = 5_000
"""Events acknowledged before the broker is killed."""

RESTART_AFTER = 12_000
"""Events acknowledged (the broker down all the while) before it is started again."""

WINDOW = 200
"""Publishes in flight at once."""


@dataclass
class Figures:
    """What the stream saw, for the assertions and the printed summary."""

    sent: int = 0
    resends: int = 0
    first_hop: int = 0
    """Calls of the first hop's handler (redeliveries included)."""
    done: dict[int, float] = field(default_factory=dict)
    """n -> when the second hop first handled it."""
    second_hop: int = 0
    killed_at: float = 0.0
    restarted_at: float = 0.0
    sent_at_kill: int = 0


@dataclass(frozen=True)
class TwoHops:
    """``step.requested`` -> hop one -> ``step.relayed`` -> hop two -> ``step.done``."""

    registry: Registry
    topics: tuple[str, str, str]
    requested: Any
    relayed: Any
    done: Any


def two_hops() -> TwoHops:
    base = unique("hops")
    topics = (f"{base}.in", f"{base}.mid", f"{base}.out")
    reg = Registry()

    class Requested(Event, type="step.requested", version=1, topic=topics[0], registry=reg):
        n: int

    class Relayed(Event, type="step.relayed", version=1, topic=topics[1], registry=reg):
        n: int

    class Done(Event, type="step.done", version=1, topic=topics[2], registry=reg):
        n: int

    return TwoHops(reg, topics, Requested, Relayed, Done)


async def leader_of(bootstrap: str, topic: str, partition: int) -> int:
    """The node id that leads ``topic``'s ``partition`` now."""
    client = AIOKafkaClient(bootstrap_servers=bootstrap)
    await client.bootstrap()
    try:
        await client.force_metadata_update()
        leader = client.cluster.leader_for_partition(TopicPartition(topic, partition))
        assert leader is not None, f"{topic}[{partition}] has no leader"
        assert leader >= 0, f"{topic}[{partition}] has no leader"
        return int(leader)
    finally:
        await client.close()


async def read_to_end(bootstrap: str, topic: str) -> list[int]:
    """Every ``n`` on ``topic``, from the first offset to the end offsets read now."""
    ends = {
        TopicPartition(topic, p): end for p, end in (await end_offsets(bootstrap, topic)).items()
    }
    assert ends, f"{topic} has no partitions"
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign(list(ends))
        await consumer.seek_to_beginning(*ends)
        found: list[int] = []
        deadline = time.monotonic() + 60
        while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
            assert time.monotonic() < deadline, f"{topic}: not read to its end within 60s"
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                found.extend(json.loads(r.value or b"")["n"] for r in records)
        return found
    finally:
        await consumer.stop()


async def test_a_killed_broker_loses_and_duplicates_nothing_of_20000_events_through_two_hops(
    kafka_cluster: KafkaCluster,
) -> None:
    """SIGKILL the leader of a partition after 5,000 events, start it again after 12,000:
    the checker reads all three topics end to end and finds every one of the 20,000 flows
    ended (``step.done``), none lost, no effect under two ids (a redelivery republishes the
    same derived id), no order violation (acks=all, replication 3, min ISR 2, idempotent
    producers). Redelivered copies are allowed (at-least-once) and counted."""
    cluster = kafka_cluster
    settings = KafkaSettings(bootstrap=cluster.bootstrap, topic_replication=3)
    hops = two_hops()
    figures = Figures()
    first = Service(
        unique("hop1"), registry=hops.registry, settings=settings, publishes=[hops.relayed]
    )
    second = Service(
        unique("hop2"), registry=hops.registry, settings=settings, publishes=[hops.done]
    )

    @first.handler(hops.requested)
    async def relay(event: object, ctx: HandlerContext) -> None:
        figures.first_hop += 1
        await ctx.publish(hops.relayed(n=event.n))  # type: ignore[attr-defined]

    @second.handler(hops.relayed)
    async def finish(event: object, ctx: HandlerContext) -> None:
        n = event.n  # type: ignore[attr-defined]
        figures.second_hop += 1
        figures.done.setdefault(n, time.monotonic())
        await ctx.publish(hops.done(n=n))

    feeder = Service(
        unique("feeder"), registry=hops.registry, settings=settings, publishes=[hops.requested]
    )
    victim: KafkaNode | None = None
    restarting: asyncio.Task[None] | None = None

    async def send(n: int) -> None:
        while True:
            try:  # the same id on a resend: a copy at worst, never a second effect
                await feeder.publisher.publish(
                    hops.requested(n=n), event_id=f"req-{n}", correlation_id=f"flow-{n}"
                )
                break
            except PublishError:  # not acknowledged in time: send it again (at-least-once)
                figures.resends += 1
        figures.sent += 1

    started = time.monotonic()
    async with first, second, feeder:
        for start in range(0, EVENTS, WINDOW):
            await asyncio.gather(*(send(n) for n in range(start, start + WINDOW)))
            if victim is None and figures.sent >= KILL_AFTER:
                victim = cluster.nodes[await leader_of(cluster.bootstrap, hops.topics[0], 0) - 1]
                victim.kill()
                figures.killed_at, figures.sent_at_kill = time.monotonic(), figures.sent
            if victim is not None and restarting is None and figures.sent >= RESTART_AFTER:
                figures.restarted_at = time.monotonic()
                restarting = asyncio.create_task(asyncio.to_thread(cluster.restart, victim))
        assert restarting is not None
        await restarting
        await wait_for(
            lambda: len(figures.done) == EVENTS, timeout=180, what="every event through both hops"
        )
    report = await check_topics(
        cluster.bootstrap,
        hops.topics,
        expected_flows=[f"flow-{n}" for n in range(EVENTS)],
        expected_effects=["step.requested", "step.relayed", "step.done"],
        terminal_types=["step.done"],
        timeout=120,
    )

    after_kill = [t for n, t in figures.done.items() if n >= figures.sent_at_kill]
    recovered = min(after_kill) - figures.killed_at
    report.print(
        f"broker_failover: {EVENTS} events through two hops, node "
        f"{victim.node_id if victim else '?'} SIGKILLed after {figures.sent_at_kill} and "
        f"restarted after {RESTART_AFTER} (sent {figures.sent}, +{figures.resends} resent; hop "
        f"calls {figures.first_hop} + {figures.second_hop}); time to recover {recovered:.2f}s; "
        f"{time.monotonic() - started:.1f}s in all"
    )
    assert figures.sent == EVENTS
    assert report.flows == EVENTS
    report.assert_clean()
    assert all(pid is not None for pid in cluster.pids)  # the killed node is back


async def test_events_and_committed_offsets_survive_a_restart_of_every_node(
    kafka_cluster: KafkaCluster,
) -> None:
    """Apache Kafka keeps its log and the group's commits on disk (Tansu keeps nothing): after
    every node is stopped and started again, the topic still holds every event and the group
    resumes after its last commit, handling only what is new."""
    cluster = kafka_cluster
    settings = KafkaSettings(bootstrap=cluster.bootstrap, topic_replication=3)
    cat = catalog()
    group = unique("group")
    handled: list[int] = []

    def member() -> Service:
        service = Service(group, registry=cat.registry, settings=settings)

        @service.handler(cat.v2)
        async def on_item(event: object) -> None:
            handled.append(event.n)  # type: ignore[attr-defined]

        return service

    feeder = Service(unique("feeder"), registry=cat.registry, settings=settings, publishes=[cat.v2])
    async with member(), feeder:
        for n in range(100):
            await feeder.publish(cat.v2(n=n, label="before"))
        await wait_for(lambda: len(handled) == 100, what="the first 100 events")

    await asyncio.to_thread(cluster.stop)
    assert cluster.pids == [None, None, None]
    # From a thread that ends at once: the nodes must outlive the thread that started them.
    restarter = threading.Thread(target=cluster.restart)
    restarter.start()
    await asyncio.to_thread(restarter.join)
    cluster.wait_ready()
    assert all(pid is not None for pid in cluster.pids)

    assert sorted(await read_to_end(cluster.bootstrap, cat.topic)) == list(range(100))
    handled.clear()
    async with member(), feeder:
        for n in range(100, 110):
            await feeder.publish(cat.v2(n=n, label="after"))
        await wait_for(lambda: len(handled) == 10, what="the 10 new events")
    assert sorted(handled) == list(range(100, 110))


def test_a_paused_node_answers_nothing_until_resumed(kafka_cluster: KafkaCluster) -> None:
    """SIGSTOP freezes a node (its connections stay open, nothing is answered) while the
    others go on answering; SIGCONT brings it back with the whole cluster listed."""
    cluster = kafka_cluster
    cluster.wait_ready()
    paused, others = cluster.nodes[2], cluster.nodes[:2]
    paused.pause()
    try:
        assert brokers_in_metadata(paused.host, paused.port, timeout=1.0) is None
        for node in others:
            assert brokers_in_metadata(node.host, node.port) is not None
        assert paused.running  # stopped, not gone
    finally:
        paused.resume()
    cluster.wait_ready()
    assert brokers_in_metadata(paused.host, paused.port) == {1, 2, 3}
