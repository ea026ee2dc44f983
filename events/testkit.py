"""A service driven in memory: the production consuming core over an in-memory log.

:class:`ServiceKit` binds a real :class:`Service` to an in-memory producer and
feeds records to the very :class:`BatchProcessor` the runtime runs (routing,
decoding, upcasting, every middleware, retries, dead-letter decisions, commits),
so a unit test exercises the handlers exactly as production does, without a
broker. Only the transport is replaced: sends land in :class:`MemoryLog`, and
commits and rewinds are recorded instead of sent to a group coordinator.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Self, TypeVar

from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaTimeoutError
from aiokafka.structs import OffsetAndMetadata, RecordMetadata

from choreokit.events._batch import BatchProcessor
from choreokit.events._codec import decode, encode_headers, encode_payload, header_value
from choreokit.events._consumer import ConsumerStats
from choreokit.events._dead_letter import (
    H_ATTEMPTS,
    H_CONSUMER_GROUP,
    H_ERROR_MESSAGE,
    H_ERROR_TYPE,
    H_ORIGINAL_TOPIC,
    is_dead_letter_topic,
)
from choreokit.events._envelope import H_SOURCE, Envelope
from choreokit.events._errors import ChoreoError, ConfigurationError
from choreokit.events._ids import new_event_id
from choreokit.events._model import Event
from choreokit.events._outbound import SendFuture
from choreokit.events._partitioner import KeyPartitioner
from choreokit.events._service import Service

E = TypeVar("E", bound=Event)

Headers = Sequence[tuple[str, bytes | None]]


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """One record in the in-memory log, as a consumer would read it.

    Attributes:
        topic: Its topic.
        partition: Its partition.
        offset: Its offset within the partition.
        key: Its key.
        value: Its value.
        headers: Its headers.
        timestamp_ms: When it was appended (milliseconds since the epoch).
    """

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]
    timestamp_ms: int

    def header(self, name: str) -> str | None:
        """The last value of header ``name`` as text (``None`` if absent)."""
        return header_value(self.headers, name)

    def consumer_record(self) -> ConsumerRecord[bytes, bytes]:
        """The record as aiokafka's consumer hands it out."""
        return ConsumerRecord(
            topic=self.topic,
            partition=self.partition,
            offset=self.offset,
            timestamp=self.timestamp_ms,
            timestamp_type=0,
            key=self.key,
            value=self.value,
            checksum=None,
            serialized_key_size=len(self.key or b""),
            serialized_value_size=len(self.value or b""),
            headers=list(self.headers),
        )


class MemoryLog:
    """Topics in memory: partitioned, append-only, offsets from 0 (a broker's log, no broker).

    Keyed records go to the partition Kafka's default partitioner picks, so a
    flow keeps its order as it would on a cluster.

    Args:
        partitions: Partitions of every topic.
    """

    def __init__(self, *, partitions: int = 1) -> None:
        if partitions < 1:
            raise ConfigurationError("a topic needs at least one partition")
        self.partitions = partitions
        self._records: dict[TopicPartition, list[StoredRecord]] = defaultdict(list)
        self._partitioner = KeyPartitioner()
        self._all = list(range(partitions))

    def append(
        self,
        topic: str,
        *,
        key: bytes | None,
        value: bytes | None,
        headers: Headers,
        partition: int | None = None,
    ) -> StoredRecord:
        """Append a record; returns it with its partition and offset."""
        if partition is None:
            partition = int(self._partitioner(key, self._all, self._all)) if key else 0
        if not 0 <= partition < self.partitions:
            raise ConfigurationError(
                f"partition {partition} does not exist; the log has {self.partitions}"
            )
        log = self._records[TopicPartition(topic, partition)]
        stored = StoredRecord(
            topic=topic,
            partition=partition,
            offset=len(log),
            key=key,
            value=value,
            headers=tuple(headers),
            timestamp_ms=int(datetime.now(UTC).timestamp() * 1000),
        )
        log.append(stored)
        return stored

    def read(self, topic: str, partition: int = 0, *, start: int = 0) -> list[StoredRecord]:
        """Records of one partition from offset ``start`` on."""
        return self._records.get(TopicPartition(topic, partition), [])[start:]

    def topic(self, topic: str) -> list[StoredRecord]:
        """Every record of ``topic``, partition by partition."""
        return [r for tp, log in sorted(self._records.items()) if tp.topic == topic for r in log]

    def topics(self) -> tuple[str, ...]:
        """Topics holding at least one record."""
        return tuple(sorted({tp.topic for tp in self._records}))

    def ends(self) -> dict[TopicPartition, int]:
        """The next offset of every partition holding records (its high watermark)."""
        return {tp: len(log) for tp, log in self._records.items()}


class MemoryProducer:
    """Stands in for aiokafka's producer: appends to a :class:`MemoryLog` and acknowledges.

    Sends to a topic named in :attr:`failing` are refused by the "broker" (the
    future fails with a timeout), as a partitioned-away broker would.
    """

    def __init__(self, log: MemoryLog) -> None:
        self._log = log
        self.failing: set[str] = set()
        """Topics whose sends fail."""

    async def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        headers: Headers | None = None,
        partition: int | None = None,
    ) -> SendFuture:
        """Append the record (unless its topic is failing); the future holds its metadata."""
        future: SendFuture = asyncio.get_running_loop().create_future()
        if topic in self.failing:
            future.set_exception(KafkaTimeoutError(f"sends to {topic} fail (ServiceKit.failing)"))
            return future
        stored = self._log.append(
            topic, key=key, value=value, headers=headers or (), partition=partition
        )
        tp = TopicPartition(topic, stored.partition)
        future.set_result(
            RecordMetadata(topic, stored.partition, tp, stored.offset, stored.timestamp_ms, 0, -1)
        )
        return future


class MemoryConsumer:
    """Records what the batch processor commits and where it rewinds."""

    def __init__(self) -> None:
        self.committed: dict[TopicPartition, int] = {}
        """The group's committed offset per partition (the next offset to read)."""
        self.rewinds: dict[TopicPartition, int] = {}
        """Partitions to be read again, from the offset given."""
        self.paused: set[TopicPartition] = set()
        """Partitions paused because their retry lanes are full."""

    async def commit(self, offsets: Mapping[TopicPartition, OffsetAndMetadata]) -> None:
        """Record the group's new offsets."""
        for tp, meta in offsets.items():
            self.committed[tp] = meta.offset

    def seek(self, partition: TopicPartition, offset: int) -> None:
        """Note that ``partition`` must be read again from ``offset``."""
        self.rewinds[partition] = offset

    def pause(self, *partitions: TopicPartition) -> None:
        """Note that ``partitions`` are not fetched until resumed."""
        self.paused.update(partitions)

    def resume(self, *partitions: TopicPartition) -> None:
        """Note that ``partitions`` are fetched again."""
        self.paused.difference_update(partitions)


@dataclass(frozen=True, slots=True)
class Published:
    """An event the service published, decoded.

    Attributes:
        record: The record as it landed in the log.
        envelope: Its CloudEvents attributes.
        event: Its payload, as the model of its type and version.
    """

    record: StoredRecord
    envelope: Envelope
    event: Event

    @property
    def topic(self) -> str:
        """The topic it went to."""
        return self.record.topic

    @property
    def type(self) -> str:
        """Its event type, e.g. ``stock.reserved``."""
        return self.envelope.type


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record the service sent to a dead-letter topic, with what went wrong.

    Attributes:
        record: The dead letter as it landed in ``<topic>.dlq``.
        original_topic: Where the record was read from.
        error_type: The class name of the error that sent it there.
        error_message: The error's message.
        attempts: How many times the handler was tried (0: never reached it).
        group: The consumer group that gave up on it.
    """

    record: StoredRecord
    original_topic: str
    error_type: str
    error_message: str
    attempts: int
    group: str


@dataclass(frozen=True, slots=True)
class Handling:
    """What became of the records of one delivery.

    Attributes:
        records: The records delivered, in the order handled.
        published: Events the service published meanwhile.
        dead_letters: Records it sent to dead-letter topics meanwhile.
        complete: Every record is done and its offset committed; ``False``
            means a send was refused and the batch will be read again
            (:meth:`ServiceKit.redeliver`).
        committed: The group's committed offsets afterwards, per ``(topic, partition)``.
    """

    records: tuple[StoredRecord, ...]
    published: tuple[Published, ...]
    dead_letters: tuple[DeadLetter, ...]
    complete: bool
    committed: Mapping[tuple[str, int], int] = field(default_factory=dict)

    @property
    def envelope(self) -> Envelope | None:
        """The envelope of the (first) delivered record, when it decodes."""
        for record in self.records:
            try:
                return decode(record.headers, record.value, fallback_time=_EPOCH).envelope
            except ChoreoError:
                return None
        return None

    def events(self, model: type[E]) -> list[E]:
        """The published events of class ``model`` (its type and version), in order."""
        return [p.event for p in self.published if isinstance(p.event, model)]

    def one(self, model: type[E]) -> E:
        """The single published event of class ``model``.

        Raises:
            AssertionError: None or several were published (the message lists them).
        """
        found = self.events(model)
        if len(found) != 1:
            seen = ", ".join(p.type for p in self.published) or "nothing"
            raise AssertionError(
                f"expected one {model.event_info().type} v{model.event_info().version}, "
                f"got {len(found)} (published: {seen})"
            )
        return found[0]


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NO_WAIT = timedelta(0)


class ServiceKit:
    """Drives a real :class:`Service` in memory: deliver events, see what it did.

    The service's declared handlers, middlewares (inbox, tracing, yours),
    retry policy, unknown-type policy and dead-letter decisions all run as in
    production, through the same code; only Kafka is replaced by a
    :class:`MemoryLog`. Each :meth:`deliver` is one poll's batch: the records
    are handled, what they caused is sent, and the offsets are committed, before
    it returns.

    Example::

        async with ServiceKit(inventory) as kit:
            handling = await kit.deliver(OrderPlaced(order_id="o-1", ...))
            assert handling.one(StockReserved).order_id == "o-1"
            assert kit.committed(OrderPlaced) == 1

    Args:
        service: The service to drive; it must not be running against Kafka.
        partitions: Partitions of every topic in the in-memory log.
        real_backoff: Wait the retry policy's backoffs between tries. By
            default the kit keeps the policy's number of attempts but does not
            wait, so tests of retries take no time.
        log: Share a log with other kits, to chain services (see
            :meth:`deliver_published`). Default: a log of its own.
    """

    __test__ = False  # not a pytest test class, whatever the module importing it is called

    def __init__(
        self,
        service: Service,
        *,
        partitions: int = 1,
        real_backoff: bool = False,
        log: MemoryLog | None = None,
    ) -> None:
        self.service = service
        self.log = log or MemoryLog(partitions=partitions)
        self.producer = MemoryProducer(self.log)
        self.consumer = MemoryConsumer()
        self._real_backoff = real_backoff
        self._processor: BatchProcessor | None = None
        self._seen: dict[str, int] = {}

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind the service to the in-memory log (what ``Service.start`` does with Kafka)."""
        if self._processor is not None:
            return
        service = self.service
        if service._publisher is not None:
            raise ConfigurationError(
                f"service {service.name} is already started; give the kit a service that is not"
            )
        for spec in service.handlers:
            info = spec.model.event_info()
            service.registry.check_upcast_path(info.type, info.version)
        retry = service._retry
        if not self._real_backoff:
            retry = dataclasses.replace(
                retry, first_backoff=_NO_WAIT, max_backoff=_NO_WAIT, jitter=0.0
            )
        # The service's own binding and consuming core, over a producer of the same shape.
        service._bind(self.producer)
        self._processor = service._processor(retry=retry)

    async def stop(self) -> None:
        """Unbind the service; it may then be started for real, or given to another kit."""
        if self._processor is not None:
            self.service._unbind()
            self._processor = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- delivering ------------------------------------------------------------------------

    def record_of(
        self,
        event: Event,
        *,
        event_id: str | None = None,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        source: str = "/tests",
        time: datetime | None = None,
        traceparent: str | None = None,
    ) -> tuple[str, bytes, bytes, list[tuple[str, bytes]]]:
        """The ``(topic, key, value, headers)`` another service would send for ``event``."""
        info = type(event).event_info()
        eid = event_id or new_event_id()
        envelope = Envelope(
            id=eid,
            source=source,
            type=info.type,
            dataversion=info.version,
            time=time or datetime.now(UTC),
            correlation_id=correlation_id or eid,
            causation_id=causation_id,
            traceparent=traceparent,
        )
        return (
            info.topic,
            envelope.correlation_id.encode(),
            encode_payload(event),
            encode_headers(envelope),
        )

    async def deliver(
        self,
        *events: Event,
        event_id: str | None = None,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        source: str = "/tests",
        traceparent: str | None = None,
    ) -> Handling:
        """Append ``events`` to their topics as another service would, and handle them as one batch.

        Each event gets a fresh id and starts its own flow unless ``event_id`` /
        ``correlation_id`` say otherwise; deliver the same ``event_id`` twice to
        see a duplicate.
        """
        if not events:
            raise ConfigurationError("deliver() needs at least one event")
        if event_id is not None and len(events) > 1:
            raise ConfigurationError("event_id names one event; deliver the others separately")
        stored = []
        for event in events:
            topic, key, value, headers = self.record_of(
                event,
                event_id=event_id,
                correlation_id=correlation_id,
                causation_id=causation_id,
                source=source,
                traceparent=traceparent,
            )
            stored.append(self.log.append(topic, key=key, value=value, headers=headers))
        return await self._handle(stored)

    async def deliver_raw(
        self,
        topic: str,
        *,
        value: bytes | None,
        headers: Headers = (),
        key: bytes | None = None,
        partition: int | None = None,
    ) -> Handling:
        """Append one record exactly as given (a hostile or foreign producer's) and handle it."""
        stored = self.log.append(topic, key=key, value=value, headers=headers, partition=partition)
        return await self._handle([stored])

    async def deliver_published(self, published: Iterable[Published]) -> Handling:
        """Handle records another kit's service published (kits sharing one ``log=``).

        This chains services as Kafka would: the records keep their ids, trace
        context and causation, so ``orders -> inventory -> payments`` can be
        followed hop by hop in memory.
        """
        records = [p.record for p in published]
        if not records:
            raise ConfigurationError("nothing to deliver: the list of published events is empty")
        foreign = [r for r in records if r not in self.log.topic(r.topic)]
        if foreign:
            raise ConfigurationError(
                "these records are not in this kit's log; create the kits with one shared "
                "MemoryLog (ServiceKit(service, log=other_kit.log))"
            )
        return await self._handle(records)

    async def redeliver(self) -> Handling:
        """Read again what the last batches left undone (after a refused send), as Kafka would."""
        pending = sorted(self.consumer.rewinds.items())
        self.consumer.rewinds.clear()
        records = [
            r for tp, start in pending for r in self.log.read(tp.topic, tp.partition, start=start)
        ]
        if not records:
            raise ConfigurationError("nothing to redeliver: every batch was completed")
        return await self._handle(records)

    async def publish(self, event: Event, *, correlation_id: str | None = None) -> Published:
        """Have the service publish ``event`` outside a handler (as its HTTP API would)."""
        envelope = await self.service.publish(event, correlation_id=correlation_id)
        return next(p for p in reversed(self.published()) if p.envelope.id == envelope.id)

    async def _handle(self, stored: Sequence[StoredRecord]) -> Handling:
        processor = self._require_processor()
        before = self.log.ends()
        complete = await processor.process([r.consumer_record() for r in stored], self.consumer)
        # Records parked in their key's retry lane finish in the background in the runtime;
        # the kit waits for them, so the handling it reports is the whole of it.
        await processor.settle()
        published, dead = self._since(before)
        return Handling(
            records=tuple(stored),
            published=tuple(published),
            dead_letters=tuple(dead),
            complete=complete,
            committed={(tp.topic, tp.partition): o for tp, o in self.consumer.committed.items()},
        )

    def _require_processor(self) -> BatchProcessor:
        if self._processor is None:
            raise ConfigurationError("the kit is not started; use 'async with ServiceKit(...)'")
        return self._processor

    def _since(
        self, marks: Mapping[TopicPartition, int]
    ) -> tuple[list[Published], list[DeadLetter]]:
        published: list[Published] = []
        dead: list[DeadLetter] = []
        for tp in sorted(self.log.ends()):
            for record in self.log.read(tp.topic, tp.partition, start=marks.get(tp, 0)):
                if is_dead_letter_topic(tp.topic):
                    if record.header(H_CONSUMER_GROUP) == self.service.name:
                        dead.append(_dead_letter(record))
                elif record.header(H_SOURCE) == self.service.source:
                    published.append(self._decoded(record))
        return published, dead

    def _decoded(self, record: StoredRecord) -> Published:
        decoded = decode(record.headers, record.value, fallback_time=_EPOCH)
        envelope = decoded.envelope
        model = self.service.registry.model(envelope.type, envelope.dataversion)
        return Published(record, envelope, decoded.event(model))

    # -- what happened ---------------------------------------------------------------------

    def published(self, model: type[Event] | None = None) -> list[Published]:
        """Every event the service published so far (of class ``model`` when given)."""
        found = [
            self._decoded(r)
            for topic in self.log.topics()
            if not is_dead_letter_topic(topic)
            for r in self.log.topic(topic)
            if r.header(H_SOURCE) == self.service.source
        ]
        return [p for p in found if model is None or isinstance(p.event, model)]

    def dead_letters(self) -> list[DeadLetter]:
        """Every record the service dead-lettered so far."""
        return [
            _dead_letter(r)
            for topic in self.log.topics()
            if is_dead_letter_topic(topic)
            for r in self.log.topic(topic)
            if r.header(H_CONSUMER_GROUP) == self.service.name
        ]

    def committed(self, topic: str | type[Event], partition: int = 0) -> int:
        """The group's committed offset on ``topic`` (an event class names its topic); 0 if none."""
        name = topic if isinstance(topic, str) else topic.event_info().topic
        return self.consumer.committed.get(TopicPartition(name, partition), 0)

    @property
    def stats(self) -> ConsumerStats:
        """The service's consumer counters (handled, retries, dead letters, skips)."""
        return self.service.stats

    def failing(self, *topics: str | type[Event]) -> None:
        """Make sends to ``topics`` fail from now on (an event class names its topic)."""
        self.producer.failing.update(
            t if isinstance(t, str) else t.event_info().topic for t in topics
        )

    def healed(self, *topics: str | type[Event]) -> None:
        """Let sends to ``topics`` succeed again (all topics when none is named)."""
        if not topics:
            self.producer.failing.clear()
        for t in topics:
            self.producer.failing.discard(t if isinstance(t, str) else t.event_info().topic)


def _dead_letter(record: StoredRecord) -> DeadLetter:
    attempts = record.header(H_ATTEMPTS)
    return DeadLetter(
        record=record,
        original_topic=record.header(H_ORIGINAL_TOPIC) or "",
        error_type=record.header(H_ERROR_TYPE) or "",
        error_message=record.header(H_ERROR_MESSAGE) or "",
        attempts=int(attempts) if attempts and attempts.isdigit() else 0,
        group=record.header(H_CONSUMER_GROUP) or "",
    )
