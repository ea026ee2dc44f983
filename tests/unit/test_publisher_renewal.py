"""A producer whose sequence numbers the broker no longer accepts is replaced, once.

aiokafka's idempotent producer never recovers from ``OutOfOrderSequenceNumber`` (a batch
that expired during an outage leaves a gap the broker refuses for good); the publisher
starts a new producer instead, and the failed sends are retried by their callers.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError, OutOfOrderSequenceNumber, UnknownProducerId
from aiokafka.structs import RecordMetadata

from choreokit.events import Publisher
from tests.support import FakeProducer, catalog


@dataclass
class LosingProducer(FakeProducer):
    """Fails every send with ``error`` (as a wedged idempotent producer does); can be stopped."""

    error: type[Exception] = OutOfOrderSequenceNumber
    stopped: bool = False

    async def send(self, topic: str, *args: Any, **kwargs: Any) -> asyncio.Future[RecordMetadata]:
        await super().send(topic, *args, **kwargs)
        future: asyncio.Future[RecordMetadata] = asyncio.get_running_loop().create_future()
        future.set_exception(self.error())
        return future

    async def stop(self) -> None:
        self.stopped = True


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)  # noqa: sleep-ok - lets the done callbacks and the renewal run


@pytest.mark.parametrize("error", [OutOfOrderSequenceNumber, UnknownProducerId])
async def test_a_lost_sequence_replaces_the_producer_once(error: type[Exception]) -> None:
    cat = catalog()
    old, new = LosingProducer(error=error), FakeProducer()
    started: list[FakeProducer] = []

    async def renew() -> Any:
        started.append(new)
        return new

    publisher = Publisher(old, source="/tests", renew=renew)
    failed = [await publisher.send(publisher.prepare(cat.out(n=n))) for n in range(3)]
    await settle()
    for future in failed:
        with pytest.raises(error):
            await future  # the callers retry these, as any unacknowledged send

    assert started == [new]  # three lost sends, one new producer
    assert publisher.renewals == 1
    assert publisher.producer is new
    assert old.stopped
    acknowledged = await publisher.send(publisher.prepare(cat.out(n=9)))
    assert (await acknowledged).offset == 0
    assert len(new.sent) == 1
    assert await publisher.detach() is new


async def test_other_errors_and_a_publisher_without_renew_keep_the_producer() -> None:
    cat = catalog()
    timing_out = FakeProducer(failing_topics={cat.out_topic})

    async def renew() -> Any:
        raise AssertionError("nothing to renew")

    publisher = Publisher(timing_out, source="/tests", renew=renew)
    with pytest.raises(KafkaTimeoutError):
        await (await publisher.send(publisher.prepare(cat.out(n=1))))
    lost = LosingProducer()
    plain = Publisher(lost, source="/tests")
    with pytest.raises(OutOfOrderSequenceNumber):
        await (await plain.send(plain.prepare(cat.out(n=1))))
    await settle()
    assert publisher.producer is timing_out
    assert plain.producer is lost
    assert not lost.stopped
    assert publisher.renewals == plain.renewals == 0


async def test_a_failed_renewal_is_tried_again_on_the_next_lost_sequence() -> None:
    cat = catalog()
    old, new = LosingProducer(), FakeProducer()
    attempts: list[int] = []

    async def renew() -> Any:
        attempts.append(len(attempts))
        if len(attempts) == 1:
            raise ConnectionError("the broker is still away")
        return new

    publisher = Publisher(old, source="/tests", renew=renew)
    first = await publisher.send(publisher.prepare(cat.out(n=1)))
    await settle()
    assert publisher.producer is old
    second = await publisher.send(publisher.prepare(cat.out(n=2)))
    await settle()
    for future in (first, second):
        with pytest.raises(OutOfOrderSequenceNumber):
            await future
    assert attempts == [0, 1]
    assert publisher.producer is new
