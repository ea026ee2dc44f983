"""The transactional batch processor in memory: one transaction per batch with its offsets,
abort and rewind on any failure, retries inside the transaction, refused sends dead-lettered
on redelivery, and a fenced producer that stops all handling."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import KafkaTimeoutError, ProducerFenced
from aiokafka.structs import OffsetAndMetadata

from choreokit.events import HandlerContext, RetryPolicy
from choreokit.events._transactions import TransactionalBatchProcessor
from tests.support import FakeProducer, event_record
from tests.unit.test_consumer import Harness, Ordered, OrderedV2, Out

TP = TopicPartition("in", 0)
RETRY = RetryPolicy(max_attempts=3, first_backoff=timedelta(milliseconds=10), jitter=0)


@dataclass
class FakeTransactionalProducer(FakeProducer):
    """A FakeProducer that logs the transaction calls, and fails a commit when told to."""

    log: list[str] = field(default_factory=list)
    fail_commits: list[BaseException] = field(default_factory=list)

    async def begin_transaction(self) -> None:
        self.log.append("begin")

    async def send(self, topic: str, *args: Any, **kwargs: Any) -> Any:
        self.log.append(f"send {topic}")
        return await super().send(topic, *args, **kwargs)

    async def send_offsets_to_transaction(
        self, offsets: Mapping[TopicPartition, OffsetAndMetadata], group_id: str
    ) -> None:
        listed = ", ".join(f"{tp.topic}[{tp.partition}]={m.offset}" for tp, m in offsets.items())
        self.log.append(f"offsets {group_id} {listed}")

    async def commit_transaction(self) -> None:
        if self.fail_commits:
            raise self.fail_commits.pop(0)
        self.log.append("commit")

    async def abort_transaction(self) -> None:
        self.log.append("abort")


def harness(handler: Any, **options: Any) -> tuple[Harness, FakeTransactionalProducer]:
    h = Harness(handler, **options)
    producer = FakeTransactionalProducer()
    h.dispatcher._publisher._producer = producer
    h.producer = producer
    processor = TransactionalBatchProcessor(h.dispatcher, producer, group="svc")
    h.processor = processor  # type: ignore[assignment]
    return h, producer


def records(*ns: int) -> list[Any]:
    return [event_record(Ordered(n=n), offset=n, event_id=f"e{n}") for n in ns]


async def relay(event: OrderedV2, ctx: HandlerContext) -> None:
    await ctx.publish(Out(n=event.n))


async def test_a_batch_commits_its_sends_and_offsets_in_one_transaction() -> None:
    h, producer = harness(relay)
    assert await h.processor.process(records(0, 1), h.consumer)
    assert producer.log == ["begin", "send out", "send out", "offsets svc in[0]=2", "commit"]
    assert h.consumer.commits == []  # the consumer never commits: the transaction does
    assert h.stats.transactions_committed == 1


async def test_a_failed_commit_aborts_and_the_batch_is_read_again() -> None:
    h, producer = harness(relay)
    producer.fail_commits.append(KafkaTimeoutError())
    assert not await h.processor.process(records(5, 6), h.consumer)
    assert producer.log[-1] == "abort"
    assert h.consumer.seeks == [(TP, 5)]
    assert h.stats.transactions_aborted == 1
    producer.log.clear()
    assert await h.processor.process(records(5, 6), h.consumer)
    assert producer.log == ["begin", "send out", "send out", "offsets svc in[0]=7", "commit"]


async def test_a_retry_waits_inside_the_transaction_without_a_lane() -> None:
    failures = [ConnectionError("database hiccup")]

    async def flaky(event: OrderedV2, ctx: HandlerContext) -> None:
        if failures:
            raise failures.pop()
        await ctx.publish(Out(n=event.n))

    h, producer = harness(flaky, retry=RETRY)
    assert await h.processor.process(records(0), h.consumer)
    assert h.stats.retries == 1
    assert h.processor.parked() == 0
    assert producer.log == ["begin", "send out", "offsets svc in[0]=1", "commit"]


async def test_a_send_refused_for_good_aborts_then_dead_letters_the_record() -> None:
    h, producer = harness(relay)
    producer.refusing_topics.add("out")
    assert not await h.processor.process(records(0), h.consumer)
    assert producer.log == ["begin", "send out", "abort"]
    producer.log.clear()
    assert await h.processor.process(records(0), h.consumer)  # read again after the rewind
    assert producer.log == ["begin", "send in.dlq", "offsets svc in[0]=1", "commit"]
    [dead] = producer.to("in.dlq")
    assert dead.header("choreo_dlq_error_type") == "MessageSizeTooLargeError"


async def test_a_fenced_producer_stops_all_handling() -> None:
    handled: list[int] = []

    async def handle(event: OrderedV2) -> None:
        handled.append(event.n)

    h, producer = harness(handle, takes_context=False)
    producer.fail_commits.append(ProducerFenced())
    assert not await h.processor.process(records(0), h.consumer)
    assert h.processor.fenced is not None  # type: ignore[attr-defined]
    assert "abort" not in producer.log  # a fenced producer cannot abort
    producer.log.clear()
    assert not await h.processor.process(records(0), h.consumer)
    assert producer.log == []  # nothing begun, nothing handled
    assert handled == [0]
    assert h.consumer.seeks == [(TP, 0), (TP, 0)]


async def test_records_before_the_next_offset_are_stale_fetches() -> None:
    h, producer = harness(relay)
    assert await h.processor.process(records(0, 1), h.consumer)
    producer.log.clear()
    assert await h.processor.process(records(1, 2), h.consumer)
    assert producer.log == ["begin", "send out", "offsets svc in[0]=3", "commit"]


async def test_a_fenced_producer_reports_its_service_failed_once() -> None:
    h, producer = harness(relay)
    causes: list[BaseException] = []
    processor = TransactionalBatchProcessor(
        h.dispatcher, producer, group="svc", on_fenced=causes.append
    )
    producer.fail_commits.append(ProducerFenced())
    assert not await processor.process(records(0), h.consumer)
    assert not await processor.process(records(0), h.consumer)
    assert [type(c) for c in causes] == [ProducerFenced]  # once, however often it is read
