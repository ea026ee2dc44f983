"""An idle consumer's fetch wait grows, and it still gets the next record at once after.

On both engines, with a real consumer: the wait each fetch request carries is read
off the requests the consumer sends (a fake clock drives the idle delay, so nothing
here depends on timing). The unit tests (tests/unit/test_fetch_wait.py) pin the
policy's steps; docs/benchmarks.md ("Idle cost") what it saves and costs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.protocol.fetch import FetchRequest

from choreokit.events import (
    FetchWait,
    HandlerContext,
    KafkaSettings,
    Service,
    client_options,
    consumer_options,
    ensure_topics,
)
from choreokit.events._fetch_wait import fetch_wait_of
from tests.support import catalog, unique, wait_for

BUSY, IDLE = 20, 300  # the local profile's waits, in ms


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Consumer:
    """A group consumer polled by hand, noting the wait of every fetch request it sends."""

    def __init__(self, consumer: AIOKafkaConsumer, fetch_wait: FetchWait) -> None:
        self.consumer, self.fetch_wait = consumer, fetch_wait
        self.waits: list[int] = []
        self.received = 0
        client: Any = consumer._client
        send = client.send

        async def noting(node_id: int, request: Any, *args: Any, **kwargs: Any) -> Any:
            if isinstance(request, FetchRequest):
                self.waits.append(request._max_wait_ms)
            return await send(node_id, request, *args, **kwargs)

        client.send = noting

    async def poll(self) -> int:
        batch = await self.consumer.getmany(timeout_ms=100)
        count = sum(len(records) for records in batch.values())
        self.fetch_wait.polled(self.consumer, count)
        self.received += count
        return count

    async def poll_until(self, done: Any, what: str, polls: int = 200) -> None:
        for _ in range(polls):
            if done():
                return
            await self.poll()
        raise AssertionError(f"after {polls} polls, still waiting for {what}")


@pytest.fixture
async def topic(kafka: KafkaSettings) -> str:
    name = unique("fetchwait")
    await ensure_topics(kafka, [name])
    return name


@pytest.fixture
async def producer(kafka: KafkaSettings) -> AsyncIterator[AIOKafkaProducer]:
    started = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all")
    await started.start()
    yield started
    await started.stop()


@pytest.fixture
async def polled(kafka: KafkaSettings, topic: str) -> AsyncIterator[tuple[Consumer, Clock]]:
    settings = kafka.model_copy(update={"fetch_idle_after": timedelta(seconds=3)})
    consumer = AIOKafkaConsumer(
        topic,
        group_id=unique("group"),
        enable_auto_commit=False,
        **client_options(settings),
        **consumer_options(settings),
    )
    await consumer.start()
    clock = Clock()
    try:
        yield Consumer(consumer, FetchWait(settings, clock=clock)), clock
    finally:
        await consumer.stop()


@pytest.mark.engines("tansu", "kafka")
async def test_an_idle_consumer_fetches_with_the_idle_wait_and_a_record_brings_back_the_short(
    polled: tuple[Consumer, Clock], producer: AIOKafkaProducer, topic: str
) -> None:
    consumer, clock = polled
    await consumer.poll_until(lambda: consumer.waits, "the first fetch")
    assert fetch_wait_of(consumer.consumer) == BUSY
    clock.now += 3  # idle for fetch_idle_after
    await consumer.poll_until(lambda: IDLE in consumer.waits, "a fetch with the idle wait")
    assert fetch_wait_of(consumer.consumer) == IDLE
    # Step by step, never back while idle (which steps a fetch carried depends on when
    # the requests went out; the unit tests pin the steps themselves).
    assert consumer.waits == sorted(consumer.waits)
    assert set(consumer.waits) <= {BUSY, 40, 80, 160, IDLE}

    await producer.send_and_wait(topic, b"after the idle spell")
    await consumer.poll_until(lambda: consumer.received == 1, "the record after the idle spell")
    assert fetch_wait_of(consumer.consumer) == BUSY
    sent = len(consumer.waits)
    await consumer.poll_until(lambda: len(consumer.waits) > sent, "the next fetch")
    assert consumer.waits[sent] == BUSY, "the fetch after the record carries the short wait"


@pytest.mark.engines("tansu", "kafka")
async def test_under_steady_traffic_every_fetch_carries_the_short_wait(
    polled: tuple[Consumer, Clock], producer: AIOKafkaProducer, topic: str
) -> None:
    """A record every (fake) second for 8 s: never idle for 3 s, so never a longer wait."""
    consumer, clock = polled
    for n in range(8):
        await producer.send_and_wait(topic, b"%d" % n)
        await consumer.poll_until(lambda n=n: consumer.received == n + 1, f"record {n}")
        clock.now += 1
    assert consumer.waits
    assert set(consumer.waits) == {BUSY}


@pytest.mark.engines("tansu", "kafka")
async def test_a_service_whose_consumer_went_idle_handles_the_next_event(
    kafka: KafkaSettings,
) -> None:
    """The service's own poll loop lengthens the wait (idle at once here) and keeps handling."""
    settings = kafka.model_copy(update={"fetch_idle_after": timedelta(0)})
    cat = catalog()
    handled: list[int] = []
    service = Service(unique("idle"), registry=cat.registry, settings=settings)

    @service.handler(cat.v2)
    async def on_item(event: Any, ctx: HandlerContext) -> None:
        handled.append(event.n)

    producer = Service("producer", registry=cat.registry, settings=kafka, publishes=[cat.v2])
    async with service, producer:
        idle = lambda: fetch_wait_of(service._consumer()) == IDLE  # noqa: E731 - read twice
        await wait_for(idle, what="the service's consumer to reach the idle wait")
        await producer.publish(cat.v2(n=1, label="after the idle spell"))
        await wait_for(lambda: handled == [1], what="the event after the idle spell")
        await wait_for(idle, what="the idle wait again")
        await producer.publish(cat.v2(n=2, label="and again"))
        await wait_for(lambda: handled == [1, 2], what="the second event")
