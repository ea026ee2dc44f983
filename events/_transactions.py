"""Exactly-once hops: each batch handled in one Kafka transaction.

The events a batch's handlers publish, its dead letters, and the batch's
consumed offsets are committed together (``send_offsets_to_transaction``), or
not at all: a failure anywhere aborts the transaction and rewinds the batch's
partitions to their committed offsets, so the batch is read and handled again
and ``read_committed`` readers never see the aborted attempt.

What this gives up against :class:`~choreokit.events._batch.BatchProcessor`:
there are no per-key retry lanes (a retry's backoff holds the batch, within
the transaction), and sends are acknowledged per batch. A batch stops taking
records once its poll budget is spent; the rest are read again after the commit.

Fencing: the producer's transactional id is the instance's (stable across
restarts), so a restarted instance ends its predecessor's open transaction and
fences it. aiokafka commits offsets in a transaction by group id only (no
consumer-group generation, KIP-447), so the broker does not fence a *live*
member that has lost its partitions to another instance without noticing;
see docs/reliability.md, "Exactly-once".
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TypeAlias

from aiokafka import AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import ProducerFenced
from aiokafka.structs import OffsetAndMetadata

from choreokit.events._consumer import Committer, ConsumerStats, DeadLetterSends, Dispatcher
from choreokit.events._errors import refused_for_good
from choreokit.events._outbound import SendFuture

logger = logging.getLogger("choreokit.consumer")

Record: TypeAlias = "ConsumerRecord[bytes, bytes]"


class _Abort(Exception):  # noqa: N818 - a signal, not an error shown to anyone
    """The batch's transaction must be aborted (the cause is chained)."""


class TransactionalBatchProcessor:
    """Handles each batch in one transaction of ``producer`` and commits its offsets in it.

    Args:
        dispatcher: Handles one record; its publisher sends through ``producer``.
        producer: The instance's transactional producer (started).
        group: The consumer group whose offsets the transactions commit.
        concurrent_partitions: Handle the partitions of one batch side by side.
        poll_budget: Seconds a batch may take before it stops taking records
            (keep it well under the transaction timeout and ``max.poll.interval.ms``).
    """

    def __init__(
        self,
        dispatcher: Dispatcher,
        producer: AIOKafkaProducer,
        *,
        group: str,
        concurrent_partitions: bool = True,
        poll_budget: float = 30.0,
        on_fenced: Callable[[BaseException], None] | None = None,
    ) -> None:
        self._dispatcher = dispatcher
        self._on_fenced = on_fenced
        self._producer = producer
        self._group = group
        self._concurrent = concurrent_partitions
        self._budget = poll_budget
        self._next: dict[TopicPartition, int] = {}
        """Per partition, the offset of the next record to handle (what is committed, or
        where a batch was held back); records before it are stale fetches."""
        self._refused: dict[tuple[TopicPartition, int], BaseException] = {}
        """Records whose sends the broker refused for good: dead-lettered when read again."""
        self._consumer: Committer | None = None
        self.fenced: BaseException | None = None
        """Set once the producer was fenced: another instance took its transactional id
        (or a transaction outlasted the timeout). Nothing is handled after that."""

    @property
    def stats(self) -> ConsumerStats:
        """The dispatcher's counters."""
        return self._dispatcher.stats

    def parked(self) -> int:
        """Always 0: records are retried inside their batch's transaction, never parked."""
        return 0

    def lag(self) -> int:
        """Records on the assigned partitions not committed yet (highwater minus next)."""
        return sum(self.lag_by_partition().values())

    def lag_by_partition(self) -> dict[tuple[str, int], int]:
        """:meth:`lag` for each ``(topic, partition)`` whose highwater is known."""
        highwater = getattr(self._consumer, "highwater", None)
        if highwater is None:
            return {}
        lags: dict[tuple[str, int], int] = {}
        for tp, mark in self._next.items():
            end = highwater(tp)
            if end is not None:
                lags[tp.topic, tp.partition] = max(0, end - mark)
        return lags

    async def settle(self) -> None:
        """Nothing runs between batches (the test kit's hook)."""

    async def revoke(
        self,
        partitions: Iterable[TopicPartition],
        consumer: Committer,  # noqa: ARG002 - the processors' common signature
    ) -> None:
        """Forget ``partitions``: every batch was committed or aborted before this is called."""
        self._dispatcher.stats.rebalances += 1
        self._forget(partitions)

    async def close(self, consumer: Committer) -> None:  # noqa: ARG002 - common signature
        """Nothing to commit: each batch committed its own transaction."""
        self._forget(list(self._next))

    def _forget(self, partitions: Iterable[TopicPartition]) -> None:
        gone = set(partitions)
        for tp in gone:
            self._next.pop(tp, None)
        for key in [k for k in self._refused if k[0] in gone]:
            del self._refused[key]

    async def process(self, records: Sequence[Record], consumer: Committer) -> bool:
        """Handle ``records`` in one transaction; return whether it committed them all."""
        self._consumer = consumer
        by_partition: dict[TopicPartition, list[Record]] = {}
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            if record.offset >= self._next.get(tp, -1):
                by_partition.setdefault(tp, []).append(record)
        if not by_partition:
            return True
        if self.fenced is not None:
            self._rewind(consumer, by_partition)
            return False
        deadline = time.monotonic() + self._budget
        done: dict[TopicPartition, int] = {}
        held: dict[TopicPartition, int] = {}
        producer = self._producer
        try:
            await producer.begin_transaction()
            await self._take_all(by_partition, deadline, done, held)
            if done:
                offsets = {tp: OffsetAndMetadata(offset, "") for tp, offset in done.items()}
                await producer.send_offsets_to_transaction(offsets, self._group)
            await producer.commit_transaction()
        except Exception as exc:  # noqa: BLE001 - every failure has one answer: abort, read again
            cause = exc.__cause__ if isinstance(exc, _Abort) and exc.__cause__ else exc
            await self._abort(producer, cause)
            self._rewind(consumer, by_partition)
            return False
        self.stats.transactions_committed += 1
        self.stats.last_progress = time.monotonic()
        for tp in by_partition:
            if tp in held:
                consumer.seek(tp, held[tp])
                self._next[tp] = held[tp]
            elif tp in done:
                self._next[tp] = done[tp]
        return True

    async def _take_all(
        self,
        by_partition: dict[TopicPartition, list[Record]],
        deadline: float,
        done: dict[TopicPartition, int],
        held: dict[TopicPartition, int],
    ) -> None:
        jobs = [self._take(tp, batch, deadline, done, held) for tp, batch in by_partition.items()]
        if not self._concurrent or len(jobs) == 1:
            for job in jobs:
                await job
            return
        # Every partition's work ends before the transaction does: a send still on its way
        # after an abort would land in the next transaction.
        outcomes = await asyncio.gather(*jobs, return_exceptions=True)
        failure = next((o for o in outcomes if isinstance(o, BaseException)), None)
        if failure is not None:
            raise failure

    async def _take(
        self,
        tp: TopicPartition,
        records: list[Record],
        deadline: float,
        done: dict[TopicPartition, int],
        held: dict[TopicPartition, int],
    ) -> None:
        """Dispatch ``records`` of one partition in order; their sends join the transaction."""
        sends: list[tuple[Record, list[SendFuture]]] = []
        for record in records:
            if time.monotonic() >= deadline:
                held[tp] = record.offset
                break
            refused = self._refused.pop((tp, record.offset), None)
            if refused is not None:
                outcome: list[SendFuture] = await self._dispatcher.dead_letter(
                    record, refused, attempts=1
                )
            else:
                # Retries wait here, inside the transaction (no lanes: their sends would
                # land in a later transaction than the offset they belong with).
                outcome = await self._dispatcher.dispatch(record)
            sends.append((record, outcome))
            done[tp] = record.offset + 1
        # Every acknowledgement is awaited before any failure aborts the transaction.
        errors = [(record, futures, await _first_failure(futures)) for record, futures in sends]
        for record, futures, error in errors:
            if error is None:
                continue
            if refused_for_good(error) and not isinstance(futures, DeadLetterSends):
                # The next attempt dead-letters this record instead of sending again.
                self._refused[tp, record.offset] = error
            raise _Abort(f"a send caused by {tp}@{record.offset} failed") from error

    async def _abort(self, producer: AIOKafkaProducer, cause: BaseException) -> None:
        self.stats.transactions_aborted += 1
        if isinstance(cause, ProducerFenced):
            self._fence(cause)
            return
        logger.warning(
            "transaction aborted (%s: %s); the batch will be read again",
            type(cause).__name__,
            cause,
        )
        try:
            await producer.abort_transaction()
        except ProducerFenced as exc:
            self._fence(exc)
        except Exception as exc:  # noqa: BLE001 - a producer that cannot abort cannot go on
            self._fence(exc)

    def _fence(self, cause: BaseException) -> None:
        if self.fenced is None:
            logger.error(
                "the transactional producer was fenced or failed for good (%s: %s): another "
                "instance runs with this transactional id, or a batch outlasted "
                "CHOREO_KAFKA_TRANSACTION_TIMEOUT. This instance handles nothing more, "
                "reports unhealthy and ends its process; restart it (with its own "
                "CHOREO_KAFKA_TRANSACTIONAL_ID)",
                type(cause).__name__,
                cause,
            )
            self.fenced = cause
            if self._on_fenced is not None:
                self._on_fenced(cause)

    def _rewind(
        self, consumer: Committer, by_partition: dict[TopicPartition, list[Record]]
    ) -> None:
        self.stats.redelivered_batches += 1
        for tp, batch in by_partition.items():
            first = batch[0].offset
            consumer.seek(tp, first)
            self._next[tp] = first


async def _first_failure(futures: Sequence[SendFuture]) -> BaseException | None:
    if not futures:
        return None
    outcomes = await asyncio.gather(*futures, return_exceptions=True)
    return next((o for o in outcomes if isinstance(o, BaseException)), None)
