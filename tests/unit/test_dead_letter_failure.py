"""A step that dead-letters fails its flow: the handler's ``on_dead_letter`` event is
published in the flow, caused by the failed event, with an id derived from it."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from choreokit.events import (
    Event,
    KeyConflictError,
    PermanentError,
    Publisher,
    Registry,
    RetryPolicy,
    UnknownTypePolicy,
)
from choreokit.events._batch import BatchProcessor
from choreokit.events._consumer import ConsumerStats, Dispatcher
from choreokit.events._handling import DeadLetterEvent, HandlerSpec
from tests.support import FakeConsumer, FakeProducer, event_record, record, wait_for

reg = Registry()


class Reserved(Event, type="reserved", version=1, topic="in", registry=reg):
    order_id: str


class Declined(Event, type="declined", version=1, topic="out", registry=reg):
    order_id: str
    reason: str


FAST = RetryPolicy(max_attempts=2, first_backoff=timedelta(0), jitter=0)


def harness(
    error: BaseException | None,
    on_dead_letter: DeadLetterEvent | None,
    retry: RetryPolicy = FAST,
) -> tuple[BatchProcessor, FakeProducer, ConsumerStats]:
    async def handle(event: Reserved) -> None:
        if error is not None:
            raise error

    producer = FakeProducer()
    stats = ConsumerStats()
    spec = HandlerSpec(
        name="authorize",
        model=Reserved,
        fn=handle,
        takes_context=False,
        on_dead_letter=on_dead_letter,
    )
    dispatcher = Dispatcher(
        routes={"in": {"reserved": spec}},
        registry=reg,
        group="payments",
        publisher=Publisher(producer, source="/services/payments"),
        middlewares=(),
        retry=retry,
        unknown_types=UnknownTypePolicy.DEAD_LETTER,
        stats=stats,
    )
    return BatchProcessor(dispatcher), producer, stats


def declined(event: Reserved, error: BaseException) -> Declined:
    return Declined(order_id=event.order_id, reason=type(error).__name__)


async def test_a_dead_lettered_step_publishes_its_failure_event_in_the_flow() -> None:
    processor, producer, stats = harness(PermanentError("cannot charge"), declined)
    failed = event_record(Reserved(order_id="o-1"), correlation_id="flow-1")
    assert await processor.process([failed], FakeConsumer())
    [dead] = producer.to("in.dlq")
    assert dead.header("choreo_dlq_error_type") == "PermanentError"
    [failure] = producer.to("out")
    assert failure.header("ce_type") == "declined"
    assert failure.header("ce_correlationid") == "flow-1"
    assert failure.header("ce_causationid") == dict(failed.headers)["ce_id"].decode()
    assert failure.key == b"flow-1"
    assert Declined.model_validate_json(failure.value or b"") == Declined(
        order_id="o-1", reason="PermanentError"
    )
    assert stats.failure_events == 1


async def test_a_redelivered_failure_publishes_the_same_failure_id() -> None:
    ids = []
    for _ in range(2):
        processor, producer, _ = harness(KeyConflictError("order", "o-1", "f", "g"), declined)
        failed = event_record(Reserved(order_id="o-1"), event_id="e-1", correlation_id="flow-1")
        await processor.process([failed], FakeConsumer())
        ids.append(producer.to("out")[0].header("ce_id"))
    assert ids[0] == ids[1]


async def test_success_or_no_builder_publishes_no_failure_event() -> None:
    ok, ok_producer, _ = harness(None, declined)
    await ok.process([event_record(Reserved(order_id="o-1"))], FakeConsumer())
    assert ok_producer.to("out") == []
    plain, plain_producer, _ = harness(PermanentError("no"), None)
    await plain.process([event_record(Reserved(order_id="o-1"))], FakeConsumer())
    assert plain_producer.to("out") == []
    assert len(plain_producer.to("in.dlq")) == 1


async def test_a_builder_that_raises_leaves_the_dead_letter_and_the_batch_done() -> None:
    def broken(event: Reserved, error: BaseException) -> Declined:
        raise RuntimeError("bug")

    processor, producer, _ = harness(PermanentError("no"), broken)
    assert await processor.process([event_record(Reserved(order_id="o-1"))], FakeConsumer())
    assert len(producer.to("in.dlq")) == 1
    assert producer.to("out") == []


async def test_an_undecodable_record_is_only_dead_lettered() -> None:
    processor, producer, _ = harness(None, declined)
    bad = record("in", value=b"{}", headers=[("ce_type", b"reserved")])
    assert await processor.process([bad], FakeConsumer())
    assert len(producer.to("in.dlq")) == 1
    assert producer.to("out") == []


async def test_a_failure_event_the_broker_did_not_take_is_sent_again_from_its_lane() -> None:
    """Retries exhausted in the key's lane; the dead letter went, the failure event timed
    out: both go again (the event with the same id) and the record is done, no rewind."""
    backoff = RetryPolicy(max_attempts=2, first_backoff=timedelta(milliseconds=20), jitter=0)
    processor, producer, stats = harness(ConnectionError("bank down"), declined, backoff)
    producer.failing_topics.add("out")
    consumer = FakeConsumer()
    failed = event_record(Reserved(order_id="o-2"), correlation_id="flow-2")
    assert await processor.process([failed], consumer)
    assert stats.parked == 1
    await wait_for(lambda: len(producer.to("out")) >= 1, what="the failure event's first try")
    producer.failing_topics.clear()
    async with asyncio.timeout(10):
        await processor.settle()
    sent = producer.to("out")
    assert len(sent) >= 2
    assert {s.header("ce_id") for s in sent} == {sent[0].header("ce_id")}
    assert len(producer.to("in.dlq")) >= 2
    assert stats.failure_events >= 2
