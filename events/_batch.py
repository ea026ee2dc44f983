"""Batches in, offsets out: per-key retry lanes that never stall a partition's other keys.

Records of one partition are taken in order. A record whose first try fails
(and may be retried), or whose handler outlasts the poll budget, is *parked*:
its key gets a lane, a background task that retries it with backoff and then
handles, in order, the records of the same key that arrived meanwhile. Records
of other keys go on at once. The committed offset of a partition is its
*watermark*: the first record that is not done yet (handled, skipped or
dead-lettered, every send it caused acknowledged), so a crash or a rebalance
redelivers every record not done, and those after it (at-least-once; the inbox
and derived ids make the repeats harmless).

Bounds: a partition holds at most ``max_parked`` parked records; beyond that it
is paused (the consumer keeps polling, so the group membership is kept) until a
lane drains. A batch stops taking records once the poll budget is spent, and
the partition is rewound to the first record not taken, so the poll loop comes
back within ``max.poll.interval.ms`` however slow a handler is.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias, TypeVar, cast

from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata

from choreokit.events._consumer import Committer, ConsumerStats, DeadLetterSends, Dispatcher
from choreokit.events._errors import refused_for_good
from choreokit.events._outbound import SendFuture
from choreokit.events._retry import is_retriable

logger = logging.getLogger("choreokit.consumer")

Record: TypeAlias = "ConsumerRecord[bytes, bytes]"

_DEAD_LETTER_BACKOFF = (0.1, 0.5, 1.0, 2.0, 5.0)
"""Waits between tries to send a dead letter from a lane (the last one repeats)."""


class _Rewind(Exception):  # noqa: N818 - a signal, not an error shown to anyone
    """The partition must be read again from its watermark."""


@dataclass(eq=False)
class _KeyLane:
    backlog: deque[Record] = field(default_factory=deque)
    task: asyncio.Task[None] | None = None


@dataclass(eq=False)
class _Partition:
    tp: TopicPartition
    taken: dict[int, bool] = field(default_factory=dict)
    """Offsets taken and not yet committed, in order; ``True`` once done."""
    lanes: dict[bytes | None, _KeyLane] = field(default_factory=dict)
    committed: int | None = None
    held_at: int | None = None
    """Where the partition was last rewound to without taking the record (budget, bound)."""
    paused: bool = False
    rewind_to: int | None = None

    def parked(self) -> int:
        return sum(len(lane.backlog) + 1 for lane in self.lanes.values())

    def watermark(self) -> int | None:
        """The offset to commit: the first not done, or one past the last taken."""
        last: int | None = None
        for offset, done in self.taken.items():
            if not done:
                return offset
            last = offset
        return None if last is None else last + 1

    def trim(self, upto: int) -> None:
        for offset in [o for o in self.taken if o < upto]:
            del self.taken[offset]


class BatchProcessor:
    """Handles batches partition by partition and commits each partition's watermark.

    Args:
        dispatcher: Handles one record.
        concurrent_partitions: Handle the partitions of one batch side by side.
        poll_budget: Seconds a batch may take before the processor returns to
            the poll loop (keep it well under ``max.poll.interval.ms``).
        max_parked: Most records a partition holds in its retry lanes before it
            is paused.
    """

    def __init__(
        self,
        dispatcher: Dispatcher,
        *,
        concurrent_partitions: bool = True,
        poll_budget: float = 60.0,
        max_parked: int = 1000,
    ) -> None:
        self._dispatcher = dispatcher
        self._concurrent = concurrent_partitions
        self._budget = poll_budget
        self._max_parked = max_parked
        self._partitions: dict[TopicPartition, _Partition] = {}
        self._consumer: Committer | None = None
        self._commit_lock = asyncio.Lock()

    @property
    def stats(self) -> ConsumerStats:
        """The dispatcher's counters."""
        return self._dispatcher.stats

    def parked(self) -> int:
        """Records held in retry lanes, over every partition."""
        return sum(p.parked() for p in self._partitions.values())

    def lag(self) -> int:
        """Records on the assigned partitions not done yet: highwater minus watermark.

        Partitions whose highwater is not known yet (nothing fetched) count 0.
        """
        return sum(self.lag_by_partition().values())

    def lag_by_partition(self) -> dict[tuple[str, int], int]:
        """:meth:`lag` for each ``(topic, partition)`` whose highwater is known."""
        consumer = self._consumer
        highwater = getattr(consumer, "highwater", None)
        if consumer is None or highwater is None:
            return {}
        lags: dict[tuple[str, int], int] = {}
        for tp, partition in self._partitions.items():
            end = highwater(tp)
            mark = partition.watermark()
            if mark is None:  # nothing in hand: the next record to read
                known = [m for m in (partition.held_at, partition.committed) if m is not None]
                mark = max(known) if known else None
            if end is not None and mark is not None:
                lags[tp.topic, tp.partition] = max(0, end - mark)
        return lags

    async def process(self, records: Sequence[Record], consumer: Committer) -> bool:
        """Handle ``records`` and commit; return whether no partition had to be rewound.

        Records parked in a retry lane are not waited for: they finish in the
        background and commit their partition's watermark themselves.
        """
        self._consumer = consumer
        deadline = time.monotonic() + self._budget
        by_partition: dict[TopicPartition, list[Record]] = {}
        for record in records:
            by_partition.setdefault(TopicPartition(record.topic, record.partition), []).append(
                record
            )
        jobs = [self._take(tp, batch, consumer, deadline) for tp, batch in by_partition.items()]
        if self._concurrent and len(jobs) > 1:
            results = await asyncio.gather(*jobs)
        else:
            results = [await job for job in jobs]
        complete = all(results)
        if not complete:
            self._dispatcher.stats.redelivered_batches += 1
        committed = await self._commit(consumer, by_partition)
        return complete and committed

    async def settle(self) -> None:
        """Wait until every retry lane is done (tests; wrap in ``asyncio.timeout``)."""
        tasks = [
            lane.task
            for p in self._partitions.values()
            for lane in p.lanes.values()
            if lane.task is not None
        ]
        while tasks:
            await asyncio.wait(tasks)
            tasks = [
                lane.task
                for p in self._partitions.values()
                for lane in p.lanes.values()
                if lane.task is not None and not lane.task.done()
            ]

    async def revoke(self, partitions: Iterable[TopicPartition], consumer: Committer) -> None:
        """Before ``partitions`` move to another member: stop their lanes, commit what is done."""
        self._dispatcher.stats.rebalances += 1
        await self._release(partitions, consumer)

    async def close(self, consumer: Committer) -> None:
        """Stop every lane and commit every watermark (the service is stopping)."""
        await self._release(list(self._partitions), consumer)

    async def _release(self, partitions: Iterable[TopicPartition], consumer: Committer) -> None:
        revoked = [self._partitions[tp] for tp in partitions if tp in self._partitions]
        for partition in revoked:
            await self._cancel_lanes(partition)
        await self._commit(consumer, [p.tp for p in revoked])
        for partition in revoked:
            del self._partitions[partition.tp]

    # -- one partition's batch ------------------------------------------------------------

    async def _take(
        self, tp: TopicPartition, records: list[Record], consumer: Committer, deadline: float
    ) -> bool:
        partition = self._partitions.setdefault(tp, _Partition(tp))
        sends: list[tuple[Record, list[SendFuture]]] = []
        try:
            for record in records:
                if record.offset in partition.taken:
                    continue  # read again after a rewind that raced with a fetch
                if partition.committed is not None and record.offset < partition.committed:
                    partition.committed = None  # the group's offset was moved back
                if time.monotonic() >= deadline or partition.parked() >= self._max_parked:
                    self._hold_back(partition, record.offset, consumer)
                    break
                partition.taken[record.offset] = False
                lane = partition.lanes.get(record.key)
                if lane is not None:
                    lane.backlog.append(record)
                    self._dispatcher.stats.parked += 1
                    continue
                outcome = await self._first_try(partition, record, deadline)
                if outcome is not None:
                    sends.append((record, outcome))
            await self._acknowledge(partition, sends)
        except _Rewind:
            await self._rewind(partition, consumer)
            return False
        return True

    def _hold_back(self, partition: _Partition, offset: int, consumer: Committer) -> None:
        consumer.seek(partition.tp, offset)
        partition.held_at = offset
        if partition.parked() >= self._max_parked and not partition.paused:
            logger.warning(
                "%s[%d] holds %d parked records; paused until a retry lane drains",
                partition.tp.topic,
                partition.tp.partition,
                partition.parked(),
            )
            consumer.pause(partition.tp)
            partition.paused = True
            self._dispatcher.stats.paused += 1

    async def _first_try(
        self, partition: _Partition, record: Record, deadline: float
    ) -> list[SendFuture] | None:
        """Dispatch ``record``; return its sends, or ``None`` once its key is parked.

        The key is parked when the handler's first try failed and a retry waits
        for its backoff, or when the handler outlasts the poll budget; the
        dispatch goes on in the background, in the key's lane.
        """
        retrying = _RetrySignal()
        try:
            started = start_eagerly(self._dispatcher.dispatch(record, on_retry=retrying.set))
        except Exception:
            # Not even a dead letter could be sent (or a bug): stop here, read it again.
            logger.exception(
                "cannot finish %s@%d; it will be read again", partition.tp, record.offset
            )
            raise _Rewind from None
        if not isinstance(started, asyncio.Task):
            return started  # finished without waiting: no task, no loop turn
        task = started
        signal = asyncio.create_task(retrying.wait())
        try:
            await asyncio.wait(
                {task, signal},
                timeout=max(0.0, deadline - time.monotonic()),
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            signal.cancel()
        if not task.done():
            if not retrying.is_set():
                logger.warning(
                    "a handler of %s[%d]@%d outlasts the poll budget; its key goes on in a lane",
                    record.topic,
                    record.partition,
                    record.offset,
                )
            self._park(partition, record, task)
            return None
        try:
            return task.result()
        except Exception:
            # Not even a dead letter could be sent (or a bug): stop here, read it again.
            logger.exception(
                "cannot finish %s@%d; it will be read again", partition.tp, record.offset
            )
            raise _Rewind from None

    def _park(
        self, partition: _Partition, record: Record, pending: asyncio.Task[list[SendFuture]]
    ) -> None:
        self._dispatcher.stats.parked += 1
        lane = _KeyLane()
        partition.lanes[record.key] = lane
        lane.task = asyncio.create_task(self._lane(partition, record, pending, lane))

    async def _acknowledge(
        self, partition: _Partition, sends: list[tuple[Record, list[SendFuture]]]
    ) -> None:
        # One wait for the whole batch's acknowledgements, then each record's in order.
        await _all_done([future for _, futures in sends for future in futures])
        for record, futures in sends:
            error = _failure(futures)
            if error is not None and not _retriable_send(error) and not _is_dead_letter(futures):
                # The broker refused a send for good: trying again cannot help.
                logger.error(
                    "a send caused by %s@%d was refused: %s", partition.tp, record.offset, error
                )
                dead = await self._dispatcher.dead_letter(record, error, attempts=1)
                error = await _first_failure(dead)
            if error is not None:
                logger.error(
                    "a send caused by %s@%d failed: %s", partition.tp, record.offset, error
                )
                raise _Rewind
            self._done(partition, record.offset)

    def _done(self, partition: _Partition, offset: int) -> None:
        if offset in partition.taken:
            partition.taken[offset] = True
        self._dispatcher.stats.last_progress = time.monotonic()

    # -- lanes ----------------------------------------------------------------------------

    async def _lane(
        self,
        partition: _Partition,
        record: Record,
        pending: asyncio.Task[list[SendFuture]],
        lane: _KeyLane,
    ) -> None:
        """Finish ``record``, then the records of its key that queued behind it, in order."""
        try:
            try:
                outcome = await pending
            except Exception as exc:  # noqa: BLE001 - the lane dead-letters what it cannot finish
                outcome = await self._dead_letter_until_sent(record, exc)
            while True:
                await self._finish(partition, record, outcome)
                if not lane.backlog:
                    break
                record = lane.backlog.popleft()
                outcome = await self._dispatch_inline(record)
        finally:
            pending.cancel()
            if partition.lanes.get(record.key) is lane:
                del partition.lanes[record.key]
        if partition.paused and partition.parked() < self._max_parked and self._consumer:
            self._consumer.resume(partition.tp)
            partition.paused = False
        if self._consumer is not None:
            await self._commit(self._consumer, [partition.tp])

    async def _dispatch_inline(self, record: Record) -> list[SendFuture]:
        try:
            return await self._dispatcher.dispatch(record)
        except Exception as exc:  # noqa: BLE001 - the lane dead-letters what it cannot finish
            return await self._dead_letter_until_sent(record, exc)

    async def _finish(
        self, partition: _Partition, record: Record, outcome: list[SendFuture]
    ) -> None:
        while True:
            error = await _first_failure(outcome)
            if error is None:
                self._done(partition, record.offset)
                return
            if isinstance(outcome, DeadLetterSends):
                logger.error(
                    "the dead letter of %s@%d failed: %s", partition.tp, record.offset, error
                )
                cause, attempts, follow_up = outcome.error, outcome.attempts, outcome.follow_up
                outcome = await self._dead_letter_until_sent(record, cause, attempts=attempts)
                if follow_up is not None:
                    # The step's failure event too (its flow must still fail).
                    outcome = DeadLetterSends([*outcome, *await self._until_sent(follow_up)])
                    outcome.error, outcome.attempts = cause, attempts
                    outcome.follow_up = follow_up
            elif not _retriable_send(error):
                logger.error(
                    "a send caused by %s@%d was refused: %s", partition.tp, record.offset, error
                )
                outcome = await self._dead_letter_until_sent(record, error, attempts=1)
            else:
                # The handler's events were not acknowledged: run it again (same derived ids).
                outcome = await self._dispatch_inline(record)

    async def _dead_letter_until_sent(
        self, record: Record, error: BaseException, *, attempts: int = 0
    ) -> list[SendFuture]:
        for n in range(1_000_000):
            try:
                futures = await self._dispatcher.dead_letter(record, error, attempts=attempts)
                if await _first_failure(futures) is None:
                    return futures
            except Exception:
                logger.exception("cannot dead-letter %s@%d yet", record.topic, record.offset)
            await asyncio.sleep(_DEAD_LETTER_BACKOFF[min(n, len(_DEAD_LETTER_BACKOFF) - 1)])
        raise AssertionError("unreachable")

    async def _until_sent(
        self, send: Callable[[], Awaitable[list[SendFuture]]]
    ) -> list[SendFuture]:
        for n in range(1_000_000):
            try:
                futures = await send()
                if await _first_failure(futures) is None:
                    return futures
            except Exception:
                logger.exception("cannot send a failure event yet")
            await asyncio.sleep(_DEAD_LETTER_BACKOFF[min(n, len(_DEAD_LETTER_BACKOFF) - 1)])
        raise AssertionError("unreachable")

    async def _cancel_lanes(self, partition: _Partition) -> None:
        tasks = [lane.task for lane in partition.lanes.values() if lane.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        partition.lanes.clear()

    async def _rewind(self, partition: _Partition, consumer: Committer) -> None:
        await self._cancel_lanes(partition)
        mark = partition.watermark()
        await self._commit(consumer, [partition.tp])
        if mark is not None:
            consumer.seek(partition.tp, mark)
        partition.taken.clear()
        if partition.paused:
            consumer.resume(partition.tp)
            partition.paused = False

    # -- commits --------------------------------------------------------------------------

    async def _commit(self, consumer: Committer, partitions: Iterable[TopicPartition]) -> bool:
        async with self._commit_lock:
            offsets: dict[TopicPartition, OffsetAndMetadata] = {}
            for tp in partitions:
                partition = self._partitions.get(tp)
                if partition is None:
                    continue
                mark = partition.watermark()
                if mark is None or (
                    partition.committed is not None and mark <= partition.committed
                ):
                    continue
                first = next(iter(partition.taken), None)
                if partition.committed is None and first is not None and mark <= first:
                    continue  # nothing done yet
                offsets[tp] = OffsetAndMetadata(mark, "")
            if not offsets:
                return True
            try:
                await consumer.commit(offsets)
            except KafkaError as exc:
                # The partitions moved to another member, which reads them from the last
                # committed offset: these records are handled again there, never lost.
                self._dispatcher.stats.commit_failures += 1
                logger.warning("offset commit failed (%s); the records will be redelivered", exc)
                return False
            for tp, meta in offsets.items():
                partition = self._partitions[tp]
                partition.committed = meta.offset
                partition.trim(meta.offset)
            return True


_T = TypeVar("_T")


def start_eagerly(coro: Coroutine[Any, Any, _T]) -> _T | asyncio.Task[_T]:
    """Run ``coro`` at once until it first waits: its result if it never does, else its task.

    Python 3.12's eager tasks, for 3.11: most handlers publish and return without
    waiting on anything, and a task per record made each one cost a turn of the
    event loop, in which the producer sent a request per record instead of one
    per batch. The first step runs in a copy of the current context, as a task's
    would; a coroutine that waits goes on in a task of that context, waiting on
    the future it yielded first.
    """
    context = contextvars.copy_context()
    try:
        waiter = context.run(coro.send, None)
    except StopIteration as stop:
        return cast("_T", stop.value)
    return asyncio.get_running_loop().create_task(_resume(coro, waiter), context=context)


async def _resume(coro: Coroutine[Any, Any, _T], waiter: Any) -> _T:
    """Go on with ``coro``, suspended on ``waiter``, as its task would have."""
    while True:
        try:
            if waiter is None:  # a bare yield (asyncio.sleep(0)): one turn of the loop
                await asyncio.sleep(0)
            else:
                waiter._asyncio_future_blocking = False  # taken over, as Task.__step does
                await asyncio.wait([waiter])
        except asyncio.CancelledError as cancelled:
            if waiter is not None:
                waiter.cancel()
            try:
                waiter = coro.throw(cancelled)
            except StopIteration as stop:
                return cast("_T", stop.value)
            continue
        try:
            waiter = coro.send(None)
        except StopIteration as stop:
            return cast("_T", stop.value)


class _RetrySignal:
    """Set when a record's first try failed and a retry waits for its backoff.

    The event to wait on is made only when the dispatch did not finish at once
    (most records never need one).
    """

    __slots__ = ("_event", "_set")

    def __init__(self) -> None:
        self._set = False
        self._event: asyncio.Event | None = None

    def set(self) -> None:
        self._set = True
        if self._event is not None:
            self._event.set()

    def is_set(self) -> bool:
        return self._set

    async def wait(self) -> None:
        if self._event is None:
            self._event = asyncio.Event()
            if self._set:
                self._event.set()
        await self._event.wait()


async def _all_done(futures: Sequence[SendFuture]) -> None:
    """Wait until every one of ``futures`` is done (without cancelling them if this is).

    One at a time: a produce response resolves a whole batch's futures at once,
    so this wakes about once per response, with no callback on every future.
    """
    waited = False
    for future in futures:
        if not future.done():
            await asyncio.wait((future,))
            waited = True
    if futures and not waited:
        # Done already (an in-memory producer's): let their callbacks run first, as they do
        # before this wakes up after a broker's acknowledgement.
        await asyncio.sleep(0)  # noqa: sleep-ok - one turn of the loop, not a wait


async def _first_failure(futures: Sequence[SendFuture]) -> BaseException | None:
    """Wait for ``futures``; return the first one's failure in their order, or ``None``."""
    await _all_done(futures)
    return _failure(futures)


def _failure(futures: Sequence[SendFuture]) -> BaseException | None:
    """The first failure among ``futures`` (all done) in their order, or ``None``."""
    for future in futures:
        if future.cancelled():
            return asyncio.CancelledError()
        error = future.exception()
        if error is not None:
            return error
    return None


def _retriable_send(error: BaseException) -> bool:
    """Whether a failed send may succeed if tried again."""
    if refused_for_good(error):
        return False
    if isinstance(error, KafkaError):
        return True
    return is_retriable(error)


def _is_dead_letter(futures: Sequence[SendFuture]) -> bool:
    return isinstance(futures, DeadLetterSends)
