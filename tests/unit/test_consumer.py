"""The consuming core in memory: routing, retries, dead letters, causation, commits."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pytest
from aiokafka import TopicPartition

from choreokit.events import (
    ChoreoError,
    Delivery,
    Event,
    HandlerContext,
    Middleware,
    PermanentError,
    Publisher,
    Registry,
    RetryPolicy,
    UnknownTypePolicy,
)
from choreokit.events._batch import BatchProcessor
from choreokit.events._consumer import ConsumerStats, Dispatcher
from choreokit.events._handling import HandlerSpec, Next
from choreokit.events._ids import derived_event_id
from tests.support import FakeConsumer, FakeProducer, event_record, record

reg = Registry()


class Ordered(Event, type="ordered", version=1, topic="in", registry=reg):
    n: int


class OrderedV2(Event, type="ordered", version=2, topic="in", registry=reg):
    n: int
    note: str


class Sibling(Event, type="sibling", version=1, topic="in", registry=reg):
    pass


class Out(Event, type="out", version=1, topic="out", registry=reg):
    n: int


reg.add_upcaster(Ordered, OrderedV2, lambda old: OrderedV2(n=old.n, note="upcast"))

FAST = RetryPolicy(max_attempts=3, first_backoff=timedelta(0), jitter=0)


class Harness:
    def __init__(
        self,
        handler: Any,
        *,
        model: type[Event] = OrderedV2,
        retry: RetryPolicy = FAST,
        unknown: UnknownTypePolicy = UnknownTypePolicy.DEAD_LETTER,
        middlewares: Sequence[Middleware] = (),
        takes_context: bool = True,
    ) -> None:
        self.producer = FakeProducer()
        self.consumer = FakeConsumer()
        self.stats = ConsumerStats()
        publisher = Publisher(self.producer, source="/services/test", middlewares=middlewares)
        spec = HandlerSpec(name="handle", model=model, fn=handler, takes_context=takes_context)
        self.dispatcher = Dispatcher(
            routes={"in": {model.event_info().type: spec}},
            registry=reg,
            group="svc",
            publisher=publisher,
            middlewares=middlewares,
            retry=retry,
            unknown_types=unknown,
            stats=self.stats,
        )
        self.processor = BatchProcessor(self.dispatcher)

    async def run(self, *records: Any) -> bool:
        """Process ``records`` and wait for their retry lanes; whether nothing was rewound."""
        complete = await self.processor.process(records, self.consumer)
        await self.processor.settle()
        return complete


async def test_handled_records_are_committed_after_the_handler_succeeds() -> None:
    seen: list[OrderedV2] = []

    async def handle(event: OrderedV2, ctx: HandlerContext) -> None:
        assert h.consumer.commits == []  # nothing is committed before the handler returns
        seen.append(event)

    h = Harness(handle)
    done = await h.run(
        event_record(OrderedV2(n=1, note="a"), offset=10, version=2),
        event_record(Ordered(n=2), offset=11),
    )
    assert done
    assert seen == [OrderedV2(n=1, note="a"), OrderedV2(n=2, note="upcast")]
    assert h.consumer.commits == [{TopicPartition("in", 0): 12}]
    assert h.stats.handled == 2


async def test_partitions_are_committed_separately() -> None:
    async def handle(event: OrderedV2) -> None:
        return None

    h = Harness(handle, takes_context=False)
    await h.run(
        event_record(Ordered(n=1), offset=5, partition=0),
        event_record(Ordered(n=2), offset=7, partition=3),
    )
    assert h.consumer.commits == [{TopicPartition("in", 0): 6, TopicPartition("in", 3): 8}]


async def test_published_events_inherit_the_flow_and_name_their_cause() -> None:
    async def handle(event: OrderedV2, ctx: HandlerContext) -> None:
        await ctx.publish(Out(n=event.n))
        await ctx.publish(Out(n=event.n + 100))

    h = Harness(handle)
    await h.run(event_record(Ordered(n=1), event_id="cause-1", correlation_id="flow-1"))
    sent = h.producer.to("out")
    assert [s.header("ce_correlationid") for s in sent] == ["flow-1", "flow-1"]
    assert [s.header("ce_causationid") for s in sent] == ["cause-1", "cause-1"]
    assert [s.key for s in sent] == [b"flow-1", b"flow-1"]
    assert [s.header("ce_source") for s in sent] == ["/services/test", "/services/test"]
    assert [s.header("ce_id") for s in sent] == [
        derived_event_id("cause-1", "svc/handle", 0),
        derived_event_id("cause-1", "svc/handle", 1),
    ]


async def test_handling_a_redelivery_again_publishes_the_same_ids() -> None:
    async def handle(event: OrderedV2, ctx: HandlerContext) -> None:
        await ctx.publish(Out(n=event.n))

    h = Harness(handle)
    first = event_record(Ordered(n=1), event_id="cause-1")
    await h.run(first)
    await h.run(first)
    ids = [s.header("ce_id") for s in h.producer.to("out")]
    assert len(ids) == 2
    assert ids[0] == ids[1]


async def test_a_failed_attempt_publishes_nothing_and_is_retried() -> None:
    attempts: list[int] = []

    async def handle(event: OrderedV2, ctx: HandlerContext) -> None:
        attempts.append(ctx.attempt)
        await ctx.publish(Out(n=ctx.attempt))
        if ctx.attempt < 3:
            raise ConnectionError("database hiccup")

    h = Harness(handle)
    assert await h.run(event_record(Ordered(n=1)))
    assert attempts == [1, 2, 3]
    assert [s.value for s in h.producer.to("out")] == [b'{"n":3}']
    assert h.stats.retries == 2
    assert h.producer.to("in.dlq") == []


async def test_exhausted_retries_go_to_the_dead_letter_topic_and_the_batch_moves_on() -> None:
    handled: list[int] = []

    async def handle(event: OrderedV2) -> None:
        if event.n == 1:
            raise TimeoutError("always")
        handled.append(event.n)

    h = Harness(handle, takes_context=False)
    bad = event_record(Ordered(n=1), offset=0)
    assert await h.run(bad, event_record(Ordered(n=2), offset=1))
    assert handled == [2]
    [dead] = h.producer.to("in.dlq")
    assert dead.value == bad.value
    assert dead.key == bad.key
    assert dead.header("choreo_dlq_error_type") == "TimeoutError"
    assert dead.header("choreo_dlq_attempts") == "3"
    assert dead.header("choreo_dlq_original_offset") == "0"
    assert dead.header("choreo_dlq_consumer_group") == "svc"
    assert dead.header("ce_id") == dict(bad.headers)["ce_id"].decode()
    assert h.consumer.commits == [{TopicPartition("in", 0): 2}]


@pytest.mark.parametrize("error", [PermanentError("no"), ValueError("x")])
async def test_permanent_errors_are_not_retried(error: Exception) -> None:
    calls = 0

    async def handle(event: OrderedV2) -> None:
        nonlocal calls
        calls += 1
        raise error

    h = Harness(handle, takes_context=False)
    await h.run(event_record(Ordered(n=1)))
    expected = 1 if isinstance(error, ChoreoError) else 3
    assert calls == expected
    assert h.producer.to("in.dlq")[0].header("choreo_dlq_attempts") == str(expected)


async def test_known_types_nobody_here_wants_are_skipped_and_counted() -> None:
    async def handle(event: OrderedV2) -> None:
        raise AssertionError("not for me")

    h = Harness(handle, takes_context=False)
    assert await h.run(event_record(Sibling(), offset=3))
    assert h.stats.skipped == {"sibling": 1}
    assert h.producer.sent == []
    assert h.consumer.commits == [{TopicPartition("in", 0): 4}]


async def test_unknown_types_are_dead_lettered_or_skipped_by_policy() -> None:
    async def handle(event: OrderedV2) -> None:
        return None

    rogue = record(
        "in",
        value=b"{}",
        headers=[("ce_specversion", b"1.0"), ("ce_type", b"rogue"), ("ce_id", b"1")],
    )
    h = Harness(handle, takes_context=False)
    await h.run(rogue)
    assert h.producer.to("in.dlq")[0].header("choreo_dlq_error_type") == "UnknownEventTypeError"
    lenient = Harness(handle, takes_context=False, unknown=UnknownTypePolicy.SKIP)
    await lenient.run(rogue)
    assert lenient.producer.sent == []
    assert lenient.stats.skipped == {"rogue": 1}


async def test_a_version_newer_than_the_handler_is_dead_lettered() -> None:
    async def handle(event: Ordered) -> None:
        raise AssertionError("must not be called")

    h = Harness(handle, model=Ordered, takes_context=False)
    await h.run(event_record(OrderedV2(n=1, note="x"), version=2))
    [dead] = h.producer.to("in.dlq")
    assert dead.header("choreo_dlq_error_type") == "VersionTooNewError"
    assert "v2 is newer than the handler's v1" in (dead.header("choreo_dlq_error_message") or "")


async def test_a_failed_send_rewinds_to_its_record_and_commits_only_before_it() -> None:
    async def handle(event: OrderedV2, ctx: HandlerContext) -> None:
        if event.n == 2:
            await ctx.publish(Out(n=2))

    h = Harness(handle)
    h.producer.failing_topics.add("out")
    done = await h.run(*(event_record(Ordered(n=n), offset=n) for n in (1, 2, 3)))
    assert not done
    assert h.consumer.commits == [{TopicPartition("in", 0): 2}]
    assert h.consumer.seeks == [(TopicPartition("in", 0), 2)]
    assert h.stats.redelivered_batches == 1


async def test_a_dead_letter_that_cannot_be_sent_is_not_committed() -> None:
    async def handle(event: OrderedV2) -> None:
        raise PermanentError("bad")

    h = Harness(handle, takes_context=False)
    h.producer.failing_topics.add("in.dlq")
    assert not await h.run(event_record(Ordered(n=1), offset=4))
    assert h.consumer.commits == []
    assert h.consumer.seeks == [(TopicPartition("in", 0), 4)]


async def test_middlewares_wrap_delivery_attempts_and_publishing_in_order() -> None:
    log: list[str] = []

    class Recorder(Middleware):
        def __init__(self, name: str) -> None:
            self.name = name

        async def on_delivery(self, delivery: Delivery, call_next: Next) -> None:
            log.append(f"{self.name}:delivery")
            await call_next(delivery)
            log.append(f"{self.name}:delivered")

        async def on_attempt(self, delivery: Delivery, call_next: Next) -> None:
            log.append(f"{self.name}:attempt{delivery.attempt}")
            await call_next(delivery)

        async def on_publish(self, outbound: Any, send: Any) -> Any:
            log.append(f"{self.name}:publish")
            return await send(outbound)

    async def handle(event: OrderedV2, ctx: HandlerContext) -> None:
        log.append("handler")
        await ctx.publish(Out(n=1))

    h = Harness(handle, middlewares=[Recorder("outer"), Recorder("inner")])
    await h.run(event_record(Ordered(n=1)))
    assert log == [
        "outer:delivery",
        "inner:delivery",
        "outer:attempt1",
        "inner:attempt1",
        "handler",
        "outer:publish",
        "inner:publish",
        "inner:delivered",
        "outer:delivered",
    ]


def test_backoffs_grow_and_are_capped() -> None:
    policy = RetryPolicy(
        max_attempts=6,
        first_backoff=timedelta(milliseconds=100),
        max_backoff=timedelta(milliseconds=500),
        jitter=0,
    )
    assert list(policy.backoffs()) == [0.1, 0.2, 0.4, 0.5, 0.5]
    with pytest.raises(ValueError, match="at least 1"):
        RetryPolicy(max_attempts=0)
