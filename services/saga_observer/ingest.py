"""The consumer: every topic by pattern, batches applied to the store with their offsets.

Why a bare aiokafka consumer and not :class:`events.Service`: a service
dispatches by handler and topic and keeps its offsets in Kafka, while the
observer reads every topic (a pattern, so new topics join) and keeps its
offsets in its own database, in the transaction that applies each batch. It
seeks to those stored offsets whenever partitions are assigned, before any
record is read. Offsets are also committed to Kafka after each database commit,
for lag tools only: they are never read back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import IllegalStateError, KafkaError
from aiokafka.structs import OffsetAndMetadata
from sqlalchemy.exc import (
    DBAPIError,
    DisconnectionError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from choreokit.events import (
    FetchWait,
    KafkaSettings,
    broker_unavailable,
    client_options,
    consumer_options,
    millis,
)
from choreokit.services.saga_observer.lifecycle import Transition
from choreokit.services.saga_observer.metrics import ObserverMetrics
from choreokit.services.saga_observer.records import (
    Seen,
    SeenEvent,
    SeenReject,
    classify,
    rejected,
)
from choreokit.services.saga_observer.settings import ObserverSettings
from choreokit.services.saga_observer.store import Advance, Applied, FencedError, Store

logger = logging.getLogger("choreokit.observer.ingest")
_MAX_BACKOFF = 5.0
_POLL_MS = 200  # an idle loop looks for records (and the stop signal) this often
_DEFAULT_BATCH = 2_000
"""Records per batch unless ``CHOREO_KAFKA_MAX_BATCH`` is set (a handler's default is 500).

A batch is one transaction with a fixed number of statements, so larger
batches spend less per event (docs/benchmarks.md); the offsets are in the same
transaction, so a crash at any moment still leaves exactly the batches before it."""
_DEFAULT_WRITERS = 4
"""Batches of disjoint partitions written at once on PostgreSQL (``CHOREO_OBSERVER_WRITERS``):
the server works on some while Python prepares others."""
_RETRY_STATES = frozenset({"40001", "40P01"})
"""PostgreSQL's serialization failure and deadlock: the transaction lost a race, not its data."""
# The database, not the records: the batch is read again after a pause.
_TRANSIENT = (
    OperationalError,
    InterfaceError,
    DisconnectionError,
    PoolTimeoutError,
    OSError,
    asyncio.TimeoutError,
)


@dataclass
class _Partition:
    """Where this reader stands on one assigned partition.

    Attributes:
        expected: The stored next offset (``None``: nothing stored yet); a batch
            applies only if the database still holds it.
        floor: Records below it were applied already and are skipped.
    """

    expected: int | None
    floor: int


class Ingest:
    """Reads every matching topic and applies each batch to the store, offsets included.

    Args:
        kafka: Kafka settings.
        settings: The observer's settings.
        group: The consumer group.
        client_id: This instance's Kafka client id.
        store: Where batches go.
        metrics: The instance's metrics.
        clock: Microseconds since the epoch, now.
        lifecycle_types: Types that are the observer's own lifecycle events.
        on_transitions: Called after each commit that recorded transitions.
    """

    def __init__(
        self,
        *,
        kafka: KafkaSettings,
        settings: ObserverSettings,
        group: str,
        client_id: str,
        store: Store,
        metrics: ObserverMetrics,
        clock: Callable[[], int],
        lifecycle_types: frozenset[str],
        on_transitions: Callable[[Sequence[Transition]], None],
    ) -> None:
        self._kafka = kafka
        self._settings = settings
        self._group = group
        self._client_id = client_id
        self._store = store
        self._metrics = metrics
        self._clock = clock
        self._lifecycle_types = lifecycle_types
        self._on_transitions = on_transitions
        self._consumer: AIOKafkaConsumer | None = None
        self._partitions: dict[TopicPartition, _Partition] = {}
        self._unpositioned: set[TopicPartition] = set()
        self._lock = asyncio.Lock()
        self._backoff = 0.0
        self._generation = 0
        self._sought: dict[TopicPartition, int] = {}
        self._batch = kafka.max_batch if "max_batch" in kafka.model_fields_set else _DEFAULT_BATCH
        concurrent = store.concurrent
        self._writers = (settings.writers or _DEFAULT_WRITERS) if concurrent else 1
        self.started = asyncio.Event()

    @property
    def assignment(self) -> tuple[TopicPartition, ...]:
        """The partitions this instance reads now."""
        return tuple(sorted(self._partitions.keys() | self._unpositioned))

    def caught_up(self) -> bool:
        """Whether this instance is within one batch of the end of what it reads.

        Deadlines are judged only then: a lagging observer (behind a busy service,
        or rebuilding from an old log) has not read the events that may have met
        them, and must not announce ``saga.stalled`` or ``saga.step_overdue`` for
        flows whose answers wait, unread, in the log.
        """
        consumer = self._consumer
        if consumer is None or not self._partitions:
            return False
        assigned = consumer.assignment()
        behind = 0
        for tp, state in self._partitions.items():
            if tp not in assigned:
                continue  # a rebalance is under way
            high = consumer.highwater(tp)
            if high is None:
                return False  # not fetched yet: how far behind is unknown
            behind += max(0, high - (state.expected or 0))
        return behind <= self._batch

    def lag(self) -> int:
        """Records on the assigned partitions not yet applied, as of the last fetch."""
        consumer = self._consumer
        if consumer is None:
            return 0
        total = 0
        assigned = consumer.assignment()
        for tp, state in self._partitions.items():
            if tp not in assigned:
                continue  # a rebalance is under way
            high = consumer.highwater(tp)
            if high is not None:
                total += max(0, high - (state.expected or 0))
        return total

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set; leave the group cleanly."""
        consumer = AIOKafkaConsumer(
            group_id=self._group,
            client_id=self._client_id,
            enable_auto_commit=False,
            partition_assignment_strategy=(RangePartitionAssignor,),
            metadata_max_age_ms=millis(self._settings.topic_refresh),
            **client_options(self._kafka),
            **{**consumer_options(self._kafka), "max_poll_records": self._batch},
        )
        consumer.subscribe(pattern=self._settings.topic_pattern, listener=_Listener(self))
        try:
            await consumer.start()
        except KafkaError as exc:
            await consumer.stop()
            raise broker_unavailable(self._kafka, exc, "starting the observer's consumer") from exc
        self._consumer = consumer
        self.started.set()
        logger.info(
            "observer consuming topics matching %r as group %s",
            self._settings.topic_pattern,
            self._group,
        )
        fetch_wait = FetchWait(self._kafka)
        writing: asyncio.Task[None] | None = None
        try:
            while not stop.is_set():
                generation = self._generation
                batch = await consumer.getmany(timeout_ms=_POLL_MS, max_records=self._batch)
                fetch_wait.polled(consumer, sum(map(len, batch.values())))
                if self._unpositioned:
                    async with self._lock:
                        await self._position(tuple(self._unpositioned))
                await self._check_recreated(consumer)
                if batch:
                    # Classified while the previous batch is written; applied once it is
                    # committed (its offsets are where this one's fence starts).
                    classified = {tp: self._classify(records) for tp, records in batch.items()}
                    if writing is not None:
                        await writing
                    writing = asyncio.ensure_future(
                        self._write(consumer, batch, classified, generation, stop)
                    )
                elif writing is not None and writing.done():
                    await writing
                    writing = None
                self._metrics.assigned.set(len(self.assignment))
                self._metrics.lag.set(self.lag())
            if writing is not None:
                await writing
        finally:
            if writing is not None and not writing.done():
                writing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await writing
            self._consumer = None
            await consumer.stop()

    def _classify(self, records: list[ConsumerRecord[bytes, bytes]]) -> list[Seen]:
        return [
            classify(
                r, lifecycle_types=self._lifecycle_types, payload_limit=self._settings.payload_limit
            )
            for r in records
        ]

    async def _write(
        self,
        consumer: AIOKafkaConsumer,
        batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]],
        classified: dict[TopicPartition, list[Seen]],
        generation: int,
        stop: asyncio.Event,
    ) -> None:
        async with self._lock:
            await self._handle(consumer, batch, classified, generation)
        if self._backoff:
            await _pause(stop, self._backoff)

    async def _handle(
        self,
        consumer: AIOKafkaConsumer,
        batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]],
        classified: dict[TopicPartition, list[Seen]],
        generation: int,
    ) -> None:
        parts: dict[TopicPartition, tuple[list[Seen], Advance]] = {}
        for tp, records in batch.items():
            state = self._partitions.get(tp)
            if state is None:
                continue  # revoked meanwhile, or not positioned yet: read again once it is
            if self._sought.get(tp, -1) > generation:
                # This fetch overlapped a seek to the stored offset: its records may come
                # from the old position. Drop them, and seek again, so reading resumes at
                # the stored offset whatever the fetcher did meanwhile.
                consumer.seek(tp, state.floor)
                continue
            fresh = [r for r in records if r.offset >= state.floor]
            if records[0].offset < state.floor and state.floor == state.expected:
                # We sought to the stored offset, yet records before it came: the broker
                # reset the position to the log's start because the stored offset is past
                # its end. The log was recreated (an embedded broker restarted, a topic
                # deleted and created again): read it all; ids seen before count as
                # duplicates.
                logger.warning(
                    "%s[%d] restarted below the stored offset %d: the log was recreated; "
                    "reading it from offset %d",
                    tp.topic,
                    tp.partition,
                    state.floor,
                    records[0].offset,
                )
                state = self._partitions[tp] = _Partition(state.expected, 0)
                fresh = records
            if not fresh:
                continue
            # ``fresh`` is a suffix of ``records``: the records at or past the floor.
            seen = classified[tp][len(records) - len(fresh) :]
            parts[tp] = (seen, Advance(state.expected, fresh[-1].offset + 1))
        if not parts:
            return
        groups, other = _plan(parts, self._writers)
        outcomes = list(await asyncio.gather(*(self._apply_group(group) for group in groups)))
        if other:
            groups.append(other)
            outcomes.append(await self._apply_group(other))
        failed = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
        if any(not isinstance(outcome, FencedError) for outcome in failed):
            self._backoff = min(_MAX_BACKOFF, max(0.1, self._backoff * 2))
        elif not failed:
            self._backoff = 0.0
        if failed:
            await self._position(tuple(self._partitions))
        done = {
            tp: OffsetAndMetadata(step.next, "")
            for group, outcome in zip(groups, outcomes, strict=True)
            if not isinstance(outcome, BaseException)
            for tp, (_, step) in group.items()
        }
        if not done:
            return
        try:
            await consumer.commit(done)
        except KafkaError as exc:
            # Informational only: the database holds the offsets that count.
            logger.debug("offset commit to Kafka failed (%s); the database has them", exc)

    async def _apply_group(
        self, group: dict[TopicPartition, tuple[list[Seen], Advance]]
    ) -> Applied | Exception:
        """Apply the records of some partitions in one transaction; the error, if it failed.

        On error the caller seeks every partition to its stored offset.
        """
        seen = [item for items, _ in group.values() for item in items]
        advance = {tp: step for tp, (_, step) in group.items()}
        started = time.perf_counter()
        try:
            applied = await self._apply(seen, advance)
        except FencedError as exc:
            logger.warning("%s", exc)
            self._metrics.fenced.inc()
            return exc
        except Exception as exc:  # noqa: BLE001 - the database, or records failing only together
            self._metrics.database_errors.inc()
            logger.warning(
                "cannot apply a batch of %d records (%s: %s); reading them again shortly",
                len(seen),
                type(exc).__name__,
                exc,
            )
            return exc
        self._metrics.batch_seconds.observe(time.perf_counter() - started)
        self._metrics.batches.inc()
        self._count(applied)
        for tp, step in advance.items():
            self._partitions[tp] = _Partition(step.next, step.next)
        if applied.transitions:
            self._on_transitions(applied.transitions)
        return applied

    async def _apply(self, seen: list[Seen], advance: dict[TopicPartition, Advance]) -> Applied:
        try:
            return await self._store.apply(seen, advance, self._clock())
        except FencedError:
            raise
        except Exception as exc:  # the content of a record (find which), unless transient
            if _transient(exc):
                raise
            kept = await self._reject_failing(seen, exc)
            return await self._store.apply(kept, advance, self._clock())

    async def _reject_failing(self, seen: list[Seen], error: BaseException) -> list[Seen]:
        """Try each record of a failed batch alone; those that fail become rejects.

        A record whose content the store cannot take (a value no column holds, a
        bug its data reaches) is shown among the rejects and the batch goes on
        without it, instead of the whole batch being read again for ever.

        Raises:
            Exception: A transient database error while trying (the batch is read again).
        """
        logger.warning(
            "a batch of %d records failed (%s: %s); trying its records one by one",
            len(seen),
            type(error).__name__,
            error,
        )
        kept: list[Seen] = []
        for item in seen:
            if isinstance(item, SeenReject):
                kept.append(item)
                continue
            try:
                await self._store.check(item, self._clock())
            except Exception as exc:  # whatever it is, this record causes it (unless transient)
                if _transient(exc):
                    raise
                logger.warning(
                    "rejecting %s[%d]@%d: the observer cannot record it (%s: %s)",
                    item.position.topic,
                    item.position.partition,
                    item.position.offset,
                    type(exc).__name__,
                    exc,
                )
                kept.append(rejected(item, exc))
                continue
            kept.append(item)
        return kept

    def _count(self, applied: Applied) -> None:
        records = self._metrics.records
        records.labels("event").inc(applied.events)
        records.labels("duplicate").inc(applied.duplicates)
        records.labels("dead_letter").inc(applied.dead_letters)
        records.labels("dlq_audit").inc(applied.audits)
        records.labels("rejected").inc(applied.rejects)
        records.labels("lifecycle").inc(applied.lifecycle)
        for transition in applied.transitions:
            self._metrics.transitions.labels(transition.type).inc()

    async def _check_recreated(self, consumer: AIOKafkaConsumer) -> None:
        """Read a partition again from its start if its log ends before the stored offset.

        A log never shrinks; if the broker's high watermark is below where this
        observer stopped reading, the log was recreated (an embedded broker
        restarted, a topic deleted and created again) while the database kept
        its offsets. Events seen before count as duplicates.
        """
        shrunk: dict[TopicPartition, int] = {}
        assigned = consumer.assignment()
        for tp, state in self._partitions.items():
            if tp not in assigned or state.expected is None or state.floor != state.expected:
                continue
            high = consumer.highwater(tp)
            if high is not None and high < state.floor:
                shrunk[tp] = high
        if not shrunk:
            return
        async with self._lock:
            self._generation += 1
            assigned = consumer.assignment()
            moved = []
            for tp, high in shrunk.items():
                current = self._partitions.get(tp)
                if current is None or tp not in assigned:
                    continue  # revoked while we waited for the lock
                logger.warning(
                    "%s[%d] ends at %d, before the stored offset %d: the log was recreated; "
                    "reading it again from its start",
                    tp.topic,
                    tp.partition,
                    high,
                    current.floor,
                )
                self._partitions[tp] = _Partition(current.expected, 0)
                self._sought[tp] = self._generation
                moved.append(tp)
            if not moved:
                return
            try:
                await consumer.seek_to_beginning(*moved)
            except IllegalStateError:
                for tp in moved:
                    self._partitions.pop(tp, None)

    async def _position(self, partitions: Sequence[TopicPartition]) -> None:
        """Seek ``partitions`` to their stored offsets (the beginning when none is stored)."""
        consumer = self._consumer
        if consumer is None or not partitions:
            return
        assigned = consumer.assignment()
        wanted = [tp for tp in partitions if tp in assigned]
        self._unpositioned.difference_update(partitions)
        if not wanted:
            return
        try:
            stored = await self._store.positions()
        except (SQLAlchemyError, OSError) as exc:
            logger.warning("cannot read stored offsets (%s); trying again", exc)
            self._metrics.database_errors.inc()
            for tp in wanted:
                self._partitions.pop(tp, None)
            self._unpositioned.update(wanted)
            return
        # The assignment may have changed while the database answered.
        self._generation += 1
        assigned = consumer.assignment()
        wanted = [tp for tp in wanted if tp in assigned]
        beginning = []
        for tp in wanted:
            offset = stored.get(tp)
            self._sought[tp] = self._generation
            if offset is None:
                beginning.append(tp)
                self._partitions[tp] = _Partition(None, 0)
            else:
                consumer.seek(tp, offset)
                self._partitions[tp] = _Partition(offset, offset)
        if beginning:
            try:
                await consumer.seek_to_beginning(*beginning)
            except IllegalStateError:
                # Revoked meanwhile: whoever is assigned them next positions them.
                for tp in beginning:
                    self._partitions.pop(tp, None)
        logger.info("positioned %s", ", ".join(f"{t.topic}[{t.partition}]" for t in wanted))

    async def _assigned(self, partitions: Sequence[TopicPartition]) -> None:
        async with self._lock:
            self._unpositioned.update(partitions)
            await self._position(partitions)
        self._metrics.assigned.set(len(self.assignment))

    async def _revoked(self, partitions: Sequence[TopicPartition]) -> None:
        async with self._lock:  # let the batch in hand commit before the partitions move
            for tp in partitions:
                self._partitions.pop(tp, None)
                self._unpositioned.discard(tp)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, ingest: Ingest) -> None:
        self._ingest = ingest

    async def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        await self._ingest._revoked(list(revoked))

    async def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        await self._ingest._assigned(list(assigned))


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


def _transient(exc: BaseException) -> bool:
    """Whether ``exc`` is the database's trouble (read the batch again), not a record's."""
    if isinstance(exc, _TRANSIENT):
        return True
    return isinstance(exc, DBAPIError) and getattr(exc.orig, "sqlstate", None) in _RETRY_STATES


def _plan(
    parts: dict[TopicPartition, tuple[list[Seen], Advance]], writers: int
) -> tuple[
    list[dict[TopicPartition, tuple[list[Seen], Advance]]],
    dict[TopicPartition, tuple[list[Seen], Advance]],
]:
    """The groups written at once, and the partitions written after them in one transaction.

    Partitions of events only are written at once; the others (dead letters, audit
    entries, lifecycle events, rejects) after them: a dead letter and its flow's first
    events written at once would each miss the other's uncommitted row, and the flow
    would not count the dead letter. One writer (SQLite): the whole batch is one group.
    """
    if writers <= 1:
        return [parts], {}
    other = {tp: p for tp, p in parts.items() if not all(isinstance(s, SeenEvent) for s in p[0])}
    events = {tp: p for tp, p in parts.items() if tp not in other}
    return (_split(events, writers) if events else []), other


def _split(
    parts: dict[TopicPartition, tuple[list[Seen], Advance]], writers: int
) -> list[dict[TopicPartition, tuple[list[Seen], Advance]]]:
    """At most ``writers`` groups of whole partitions, the records spread about evenly."""
    if writers <= 1 or len(parts) <= 1:
        return [parts]
    groups: list[dict[TopicPartition, tuple[list[Seen], Advance]]] = [
        {} for _ in range(min(writers, len(parts)))
    ]
    sizes = [0] * len(groups)
    for tp in sorted(parts, key=lambda tp: -len(parts[tp][0])):
        smallest = sizes.index(min(sizes))
        groups[smallest][tp] = parts[tp]
        sizes[smallest] += len(parts[tp][0])
    return groups
