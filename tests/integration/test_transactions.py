"""Exactly-once hops (``CHOREO_KAFKA_TRANSACTIONS=on``): a batch's outputs and its consumed
offsets are committed in one Kafka transaction, an aborted attempt is invisible to
``read_committed`` readers, a restarted instance fences its predecessor, and a broker that
cannot run transactions (Tansu) is refused at start with a message saying what to do.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaTimeoutError, ProducerFenced

from choreokit.events import (
    Event,
    HandlerContext,
    KafkaSettings,
    Middleware,
    Outbound,
    Registry,
    SendFuture,
    Service,
    ServiceFailedError,
    TransactionsUnavailableError,
    dead_letter_topic,
)
from choreokit.events._kafka import start_transactional_producer
from choreokit.events._outbound import Send
from tests.integration.kafka_io import records_to_end
from tests.support import catalog, unique, wait_for

SMALL_TOPIC_BYTES = 2_000
"""``max.message.bytes`` of the topic whose broker refuses the big event."""


def transactional(settings: KafkaSettings, **update: object) -> KafkaSettings:
    return settings.model_copy(update={"transactions": True, **update})


async def committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    await consumer.start()
    try:
        found = {}
        for p in range(partitions):
            offset = await consumer.committed(TopicPartition(topic, p))
            found[p] = offset if offset is not None else 0
        return found
    finally:
        await consumer.stop()


@pytest.mark.engines("kafka")
async def test_a_transactional_hop_commits_its_outputs_and_offsets_together(
    kafka: KafkaSettings,
) -> None:
    """200 events through a hop with transactions on: a read_committed reader sees each
    output once, and the group's offsets (committed in the transactions, never by the
    consumer) are at the input's end."""
    cat = catalog()
    settings = transactional(kafka)
    hop = Service(unique("hop"), registry=cat.registry, settings=settings, publishes=[cat.out])

    @hop.handler(cat.v2)
    async def relay(event: object, ctx: HandlerContext) -> None:
        await ctx.publish(cat.out(n=event.n))  # type: ignore[attr-defined]

    feeder = Service(unique("feeder"), registry=cat.registry, settings=kafka, publishes=[cat.v2])
    async with hop, feeder:
        for n in range(200):
            await feeder.publish(cat.v2(n=n, label="x"), correlation_id=f"flow-{n}")
        await wait_for(lambda: hop.stats.handled >= 200, timeout=60, what="200 events handled")
    # Stopped: the batch in hand was committed (its transaction ended) first.
    outputs = await records_to_end(kafka.bootstrap, cat.out_topic)
    inputs = Counter(r.partition for r in await records_to_end(kafka.bootstrap, cat.topic))
    offsets = await committed(kafka.bootstrap, hop.name, cat.topic, kafka.topic_partitions)
    assert sorted(json.loads(r.value or b"")["n"] for r in outputs) == list(range(200))
    assert hop.stats.transactions_committed >= 1
    assert hop.stats.commit_failures == 0
    for partition, count in inputs.items():
        # Each partition's committed offset is past its last input record.
        assert offsets[partition] >= count, (partition, offsets, inputs)


@pytest.mark.engines("kafka")
async def test_an_aborted_attempt_is_invisible_to_read_committed_readers(
    kafka: KafkaSettings,
) -> None:
    """The handler publishes a small event and one the broker refuses (too large for its
    topic): the transaction aborts. A read_uncommitted reader sees the small event of the
    aborted attempt, a read_committed reader does not; the record is read again and
    dead-lettered in a committed transaction (one dead letter, no small event)."""
    prefix = unique()
    reg = Registry()

    class Order(Event, type=f"{prefix}.order", version=1, topic=f"{prefix}.in", registry=reg):
        n: int

    class Small(Event, type=f"{prefix}.small", version=1, topic=f"{prefix}.small", registry=reg):
        n: int

    class Big(Event, type=f"{prefix}.big", version=1, topic=f"{prefix}.big", registry=reg):
        blob: str

    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(
                    Big.event_info().topic,
                    1,
                    1,
                    topic_configs={"max.message.bytes": str(SMALL_TOPIC_BYTES)},
                )
            ]
        )
    finally:
        await admin.close()
    hop = Service(
        unique("hop"), registry=reg, settings=transactional(kafka), publishes=[Small, Big]
    )

    @hop.handler(Order)
    async def split(event: Order, ctx: HandlerContext) -> None:
        await ctx.publish(Small(n=event.n))
        await ctx.publish(Big(blob="x" * (4 * SMALL_TOPIC_BYTES)))

    feeder = Service(unique("feeder"), registry=reg, settings=kafka, publishes=[Order])
    async with hop, feeder:
        await feeder.publish(Order(n=1))
        await wait_for(lambda: hop.stats.dead_lettered == 1, timeout=60, what="the dead letter")
        await wait_for(
            lambda: hop.stats.transactions_committed >= 1, timeout=30, what="a committed batch"
        )
    topic = Small.event_info().topic
    assert hop.stats.transactions_aborted >= 1
    assert len(await records_to_end(kafka.bootstrap, topic, isolation="read_uncommitted")) >= 1
    assert await records_to_end(kafka.bootstrap, topic) == []
    letters = await records_to_end(kafka.bootstrap, dead_letter_topic(Order.event_info().topic))
    assert len(letters) == 1
    assert dict(letters[0].headers)["choreo_dlq_error_type"] == b"MessageSizeTooLargeError"


@pytest.mark.engines("kafka")
async def test_a_restarted_instance_fences_its_predecessor_and_ends_its_open_transaction(
    kafka: KafkaSettings,
) -> None:
    """The first producer of a transactional id sends a record and is never heard of again (a
    crash mid-batch). The next one of the same id ends that open transaction at start (the
    record is never visible to read_committed readers, which are not held up for the
    transaction timeout) and fences the first: its commit fails."""
    topic = unique("fence")
    txn_id = unique("instance")
    first = await start_transactional_producer(kafka, client_id="first", transactional_id=txn_id)
    try:
        await first.begin_transaction()
        await (await first.send(topic, b"from the crashed instance"))
        second = await start_transactional_producer(
            kafka, client_id="second", transactional_id=txn_id
        )
        try:
            await second.begin_transaction()
            await (await second.send(topic, b"from the restarted instance"))
            await second.commit_transaction()
        finally:
            await second.stop()
        with pytest.raises(ProducerFenced):
            await first.commit_transaction()
    finally:
        with contextlib.suppress(ProducerFenced):
            await first.stop()
    seen = await records_to_end(kafka.bootstrap, topic, timeout=10)
    assert [r.value for r in seen] == [b"from the restarted instance"]


@pytest.mark.engines("tansu", "kafka")
async def test_transactions_start_on_kafka_and_are_refused_by_tansu(
    kafka: KafkaSettings, engine: str
) -> None:
    """On Apache Kafka a transactional service starts; on Tansu (no transactions) the start
    fails with TransactionsUnavailableError saying to use Apache Kafka or turn them off."""
    cat = catalog()
    service = Service(unique("hop"), registry=cat.registry, settings=transactional(kafka))

    @service.handler(cat.v2)
    async def on_item(event: object) -> None:
        pass

    if engine == "kafka":
        async with service:
            assert service.healthy()
        return
    with pytest.raises(TransactionsUnavailableError) as refused:
        await service.start()
    assert "cannot run Kafka transactions" in str(refused.value)
    assert "CHOREO_KAFKA_TRANSACTIONS=off" in str(refused.value)
    assert not service.healthy()


@pytest.mark.engines("kafka")
async def test_rebalances_between_transactional_members_duplicate_nothing(
    kafka: KafkaSettings,
) -> None:
    """A second member joins a transactional group mid-stream and the first one later leaves:
    each revocation waits for the batch in hand's transaction, so a read_committed reader
    sees every one of the 1,500 outputs exactly once."""
    from tests.chaos.checker import check_topics

    cat = catalog()
    group = unique("group")
    calls: list[int] = []

    def member(instance: str) -> Service:
        service = Service(
            group,
            registry=cat.registry,
            settings=transactional(kafka, transactional_id=f"{group}-{instance}", max_batch=50),
            publishes=[cat.out],
        )

        @service.handler(cat.v2)
        async def relay(event: object, ctx: HandlerContext) -> None:
            calls.append(event.n)  # type: ignore[attr-defined]
            await ctx.publish(cat.out(n=event.n))  # type: ignore[attr-defined]

        return service

    feeder = Service(unique("feeder"), registry=cat.registry, settings=kafka, publishes=[cat.v2])
    first, second = member("a"), member("b")

    async def feed(numbers: range) -> None:
        for n in numbers:
            await feeder.publish(cat.v2(n=n, label="x"), correlation_id=f"flow-{n}")

    async with feeder:
        await first.start()
        await feed(range(500))
        await wait_for(lambda: len(set(calls)) >= 300, timeout=30, what="the first member")
        await second.start()  # a rebalance under the stream
        await feed(range(500, 1000))
        await wait_for(lambda: second.stats.handled > 0, timeout=30, what="the second member")
        await first.stop()  # and another
        await feed(range(1000, 1500))
        await wait_for(lambda: len(set(calls)) == 1500, timeout=60, what="every event handled")
        await second.stop()
    report = await check_topics(
        kafka.bootstrap,
        [cat.out_topic],
        isolation="read_committed",
        expected_flows=[f"flow-{n}" for n in range(1500)],
    )
    report.print("transactional rebalances")
    report.assert_clean()
    assert report.copies == 0
    assert first.stats.rebalances + second.stats.rebalances >= 1


class _FailFirstSend(Middleware):
    """Sends every record, but reports the first one as not acknowledged in time (the fault)."""

    def __init__(self) -> None:
        self.failed = False

    async def on_publish(self, outbound: Outbound, send: Send) -> SendFuture:
        sent = await send(outbound)
        if self.failed:
            return sent
        self.failed = True
        await sent  # on the log, in the open transaction
        lost: SendFuture = asyncio.get_running_loop().create_future()
        lost.set_exception(KafkaTimeoutError())
        return lost


@pytest.mark.engines("kafka")
async def test_database_effects_stay_once_through_the_inbox_when_a_transaction_aborts(
    kafka: KafkaSettings, tmp_path: Path
) -> None:
    """The handler's database transaction (the inbox) commits, then the batch's Kafka
    transaction aborts (a send reported lost). The record is read again: the inbox knows
    it, the handler does not run again, its recorded event is sent again in the new
    transaction. One database effect; one output at read_committed (two at read_uncommitted,
    one id)."""
    from sqlalchemy import Column, Integer, MetaData, Table, func, insert, select

    from choreokit.events.sql import Inbox, create_tables, transaction
    from choreokit.services.runtime.database import create_engine

    business = MetaData()
    effects = Table("effects", business, Column("n", Integer, nullable=False))
    engine = create_engine(f"sqlite:///{tmp_path / 'hop.sqlite3'}")
    await create_tables(engine)
    async with engine.begin() as conn:
        await conn.run_sync(business.create_all)
    cat = catalog()
    hop = Service(
        unique("inboxed"), registry=cat.registry, settings=transactional(kafka), publishes=[cat.out]
    )
    inbox = Inbox(engine, consumer=hop.name, registry=cat.registry)
    hop.use(inbox, _FailFirstSend())
    runs: list[int] = []

    @hop.handler(cat.v2)
    async def apply(event: object, ctx: HandlerContext) -> None:
        runs.append(event.n)  # type: ignore[attr-defined]
        await transaction().execute(insert(effects).values(n=event.n))  # type: ignore[attr-defined]
        await ctx.publish(cat.out(n=event.n))  # type: ignore[attr-defined]

    feeder = Service(unique("feeder"), registry=cat.registry, settings=kafka, publishes=[cat.v2])
    try:
        async with hop, feeder:
            await feeder.publish(cat.v2(n=3, label="x"))
            await wait_for(
                lambda: hop.stats.transactions_committed >= 1, timeout=30, what="a commit"
            )
        async with engine.connect() as conn:
            rows = (await conn.execute(select(func.count()).select_from(effects))).scalar_one()
    finally:
        await engine.dispose()
    assert hop.stats.transactions_aborted >= 1
    assert runs == [3]
    assert inbox.duplicates == 1
    assert rows == 1
    committed = await records_to_end(kafka.bootstrap, cat.out_topic)
    everything = await records_to_end(kafka.bootstrap, cat.out_topic, isolation="read_uncommitted")
    assert [json.loads(r.value or b"") for r in committed] == [{"n": 3}]
    assert len(everything) == 2
    assert len({dict(r.headers)["ce_id"] for r in everything}) == 1


@pytest.mark.engines("kafka")
async def test_a_fenced_instance_ends_its_app_and_the_live_one_takes_its_partitions(
    kafka: KafkaSettings,
) -> None:
    """Two members of one group are started with the same transactional id (a
    misconfiguration, or a restarted instance whose predecessor still runs): the second
    fences the first. The first's app ends with ServiceFailedError instead of staying in the
    group holding partitions it can no longer handle, so the second gets them all: every
    one of 400 outputs is seen once by a read_committed reader."""
    from choreokit.services.runtime.app import ServiceApp
    from tests.chaos.checker import check_topics

    cat = catalog()
    group, txn_id = unique("group"), unique("instance")
    handled: dict[str, set[int]] = {"first": set(), "second": set()}

    def member(instance: str) -> Service:
        service = Service(
            group,
            registry=cat.registry,
            settings=transactional(kafka, transactional_id=txn_id, max_batch=20),
            publishes=[cat.out],
        )

        @service.handler(cat.v2)
        async def relay(event: object, ctx: HandlerContext) -> None:
            handled[instance].add(event.n)  # type: ignore[attr-defined]
            await ctx.publish(cat.out(n=event.n))  # type: ignore[attr-defined]

        return service

    feeder = Service(unique("feeder"), registry=cat.registry, settings=kafka, publishes=[cat.v2])

    async def feed(numbers: range) -> None:
        for n in numbers:
            await feeder.publish(cat.v2(n=n, label="x"), correlation_id=f"flow-{n}")

    first, second = member("first"), member("second")
    stop = asyncio.Event()
    async with feeder:
        running = asyncio.ensure_future(ServiceApp(first).run(stop))
        try:
            await feed(range(100))
            await wait_for(lambda: len(handled["first"]) == 100, timeout=60, what="the first")
            await second.start()  # the same transactional id: the first is fenced
            await feed(range(100, 400))
            with pytest.raises(ServiceFailedError, match=f"service {group} cannot go on"):
                await asyncio.wait_for(asyncio.shield(running), timeout=60)
            assert first.failure is not None
            await wait_for(
                lambda: handled["first"] | handled["second"] >= set(range(400)),
                timeout=60,
                what="every event handled once the fenced member left",
            )
        finally:
            stop.set()
            with contextlib.suppress(ServiceFailedError):
                await running
            await second.stop()
    report = await check_topics(
        kafka.bootstrap,
        [cat.out_topic],
        isolation="read_committed",
        expected_flows=[f"flow-{n}" for n in range(400)],
    )
    report.print("a fenced member")
    report.assert_clean()
    assert report.copies == 0
    assert handled["second"], "the live member handled the fenced one's partitions"
