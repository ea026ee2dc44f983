"""Retry lanes in memory: a failing key waits aside in order, other keys go on, commits
stop at the first record not done, refused sends dead-letter at once, full lanes pause."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from aiokafka import TopicPartition

from choreokit.events import HandlerContext, RetryPolicy
from choreokit.events._batch import BatchProcessor
from tests.support import event_record
from tests.unit.test_consumer import Harness, Ordered, OrderedV2, Out

SLOW = RetryPolicy(max_attempts=3, first_backoff=timedelta(milliseconds=50), jitter=0)
TP = TopicPartition("in", 0)


def keyed(n: int, offset: int, flow: str) -> Any:
    return event_record(Ordered(n=n), offset=offset, correlation_id=flow, event_id=f"e{n}")


async def test_a_retried_key_keeps_its_order_while_other_keys_go_on() -> None:
    order: list[int] = []
    failures = {1: 2}  # n=1 fails twice, then succeeds

    async def handle(event: OrderedV2) -> None:
        if failures.get(event.n, 0):
            failures[event.n] -= 1
            raise ConnectionError("database hiccup")
        order.append(event.n)

    h = Harness(handle, takes_context=False, retry=SLOW)
    batch = [keyed(1, 0, "a"), keyed(2, 1, "b"), keyed(3, 2, "a"), keyed(4, 3, "c")]
    assert await h.processor.process(batch, h.consumer)
    # Keys b and c are done; key a waits behind its first record: nothing committed yet.
    assert order == [2, 4]
    assert h.consumer.commits == []
    await h.processor.settle()
    assert order == [2, 4, 1, 3]  # 3 came after 1 on key a, and still does
    assert h.consumer.commits == [{TP: 4}]
    assert h.stats.parked == 2  # the failing record and the one of its key behind it


async def test_the_commit_stops_at_the_first_record_not_done() -> None:
    async def handle(event: OrderedV2) -> None:
        if event.n == 2:
            raise ConnectionError("down")  # retried in its lane, after the backoff

    retry = RetryPolicy(max_attempts=2, first_backoff=timedelta(seconds=30), jitter=0)
    h = Harness(handle, takes_context=False, retry=retry)
    assert await h.processor.process(
        [keyed(1, 0, "a"), keyed(2, 1, "b"), keyed(3, 2, "c")], h.consumer
    )
    assert h.consumer.commits == [{TP: 1}]  # offset 1 is parked: 2 is done but not committed
    assert h.processor.parked() == 1
    await h.processor.close(h.consumer)  # a stop: the lane is dropped, nothing more committed
    assert h.consumer.commits == [{TP: 1}]


async def test_a_send_the_broker_refuses_for_good_is_dead_lettered_at_once() -> None:
    async def handle(event: OrderedV2, ctx: HandlerContext) -> None:
        await ctx.publish(Out(n=event.n))

    h = Harness(handle, retry=SLOW)
    h.producer.refusing_topics.add("out")
    assert await h.run(keyed(1, 0, "a"))
    [dead] = h.producer.to("in.dlq")
    assert dead.header("choreo_dlq_error_type") == "MessageSizeTooLargeError"
    assert h.consumer.seeks == []  # not rewound: retrying could never succeed
    assert h.consumer.commits == [{TP: 1}]


async def test_full_lanes_pause_the_partition_until_they_drain() -> None:
    release = asyncio.Event()

    async def handle(event: OrderedV2) -> None:
        if event.n < 3:
            await release.wait()

    h = Harness(handle, takes_context=False)
    h.processor = BatchProcessor(h.dispatcher, poll_budget=0.05, max_parked=2)
    records = [keyed(n, n, f"k{n}") for n in range(5)]
    for start in range(3):  # each batch parks one slow record, then its budget is spent
        assert await h.processor.process(records[start:], h.consumer)
    assert h.processor.parked() == 2
    assert h.consumer.paused == {TP}
    assert h.consumer.seeks == [(TP, 1), (TP, 2), (TP, 2)]  # 2.. are read again on resume
    release.set()
    await h.processor.settle()
    assert h.consumer.paused == set()
    assert h.consumer.commits[-1] == {TP: 2}


async def test_an_error_chain_and_the_last_frames_ride_with_the_dead_letter() -> None:
    async def handle(event: OrderedV2) -> None:
        try:
            stock: dict[str, int] = {}
            stock["stock"] += 1  # raises the KeyError the chain starts from
        except KeyError as exc:
            raise RuntimeError("no stock record " + "x" * 10_000) from exc

    h = Harness(handle, takes_context=False, retry=RetryPolicy(max_attempts=1))
    await h.run(keyed(1, 0, "a"))
    [dead] = h.producer.to("in.dlq")
    chain = dead.header("choreo_dlq_error_chain") or ""
    assert '"type": "RuntimeError"' in chain
    assert '"type": "KeyError"' in chain
    assert '"link": "cause"' in chain
    assert (dead.header("choreo_dlq_error_frame") or "").endswith("test_retry_lanes.py:handle")
    trace = dead.header("choreo_dlq_traceback") or ""
    assert "KeyError: 'stock'" in trace
    assert len(trace.encode()) <= 8192
    assert len((dead.header("choreo_dlq_error_message") or "").encode()) <= 4096
