"""Helpers shared by the test layers: in-memory Kafka stand-ins and condition waits."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError
from aiokafka.structs import OffsetAndMetadata, RecordMetadata

from choreokit.events import Envelope, Event, encode_headers, encode_payload


def unique(prefix: str = "t") -> str:
    """A name no other test uses (topics, groups, types)."""
    return f"{prefix}{uuid.uuid4().hex[:10]}"


async def wait_for(
    predicate: Callable[[], bool], *, timeout: float = 20.0, what: str = "condition"
) -> None:
    """Wait until ``predicate()`` holds, checking on every loop turn, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)  # noqa: sleep-ok - yields to the loop between checks


def wait_until(
    predicate: Callable[[], bool], *, timeout: float = 20.0, what: str = "condition"
) -> None:
    """Blocking form of :func:`wait_for` for synchronous tests."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)  # noqa: sleep-ok - polls a subprocess or socket between checks


def envelope_for(
    event: Event,
    *,
    event_id: str | None = None,
    correlation_id: str | None = None,
    causation_id: str | None = None,
    source: str = "/tests",
    version: int | None = None,
) -> Envelope:
    info = type(event).event_info()
    eid = event_id or uuid.uuid4().hex
    return Envelope(
        id=eid,
        source=source,
        type=info.type,
        dataversion=version or info.version,
        time=datetime(2026, 11, 21, 12, 0, tzinfo=UTC),
        correlation_id=correlation_id or eid,
        causation_id=causation_id,
    )


def record(
    topic: str,
    *,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes | None]],
    offset: int = 0,
    partition: int = 0,
    key: bytes | None = b"k",
) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic=topic,
        partition=partition,
        offset=offset,
        timestamp=1_795_000_000_000,
        timestamp_type=0,
        key=key,
        value=value,
        checksum=None,
        serialized_key_size=len(key or b""),
        serialized_value_size=len(value or b""),
        headers=list(headers),
    )


def event_record(
    event: Event, *, offset: int = 0, partition: int = 0, **attributes: Any
) -> ConsumerRecord[bytes, bytes]:
    envelope = envelope_for(event, **attributes)
    return record(
        type(event).event_info().topic,
        value=encode_payload(event),
        headers=encode_headers(envelope),
        offset=offset,
        partition=partition,
        key=envelope.correlation_id.encode(),
    )


@dataclass
class Sent:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k == name]
        return values[-1].decode() if values else None


@dataclass
class FakeProducer:
    """Stands in for AIOKafkaProducer in unit tests: records sends, acknowledges or fails them."""

    sent: list[Sent] = field(default_factory=list)
    failing_topics: set[str] = field(default_factory=set)
    refusing_topics: set[str] = field(default_factory=set)
    """Sends to these fail as the broker fails a record it will never take (too large)."""

    async def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[RecordMetadata]:
        future: asyncio.Future[RecordMetadata] = asyncio.get_running_loop().create_future()
        self.sent.append(Sent(topic, key, value, list(headers or [])))
        if topic in self.failing_topics:
            future.set_exception(KafkaTimeoutError())
        elif topic in self.refusing_topics:
            future.set_exception(MessageSizeTooLargeError())
        else:
            tp = TopicPartition(topic, 0)
            future.set_result(RecordMetadata(topic, 0, tp, len(self.sent) - 1, -1, 0, -1))
        return future

    def to(self, topic: str) -> list[Sent]:
        return [s for s in self.sent if s.topic == topic]


@dataclass
class FakeConsumer:
    """Records the commits and rewinds the batch processor asks for."""

    commits: list[dict[TopicPartition, int]] = field(default_factory=list)
    seeks: list[tuple[TopicPartition, int]] = field(default_factory=list)
    paused: set[TopicPartition] = field(default_factory=set)

    async def commit(self, offsets: Mapping[TopicPartition, OffsetAndMetadata]) -> None:
        self.commits.append({tp: meta.offset for tp, meta in offsets.items()})

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self.seeks.append((partition, offset))

    def pause(self, *partitions: TopicPartition) -> None:
        self.paused.update(partitions)

    def resume(self, *partitions: TopicPartition) -> None:
        self.paused.difference_update(partitions)


async def gather_all(awaitables: Sequence[Awaitable[Any]]) -> list[Any]:
    return list(await asyncio.gather(*awaitables))


@dataclass(frozen=True)
class Catalog:
    """Event classes declared for one test, on topics no other test uses."""

    registry: Any
    topic: str
    out_topic: str
    v1: Any
    v2: Any
    sibling: Any
    out: Any


def catalog(prefix: str | None = None) -> Catalog:
    """Declare ``item.added`` v1/v2 (with an upcaster), a sibling type and an output type."""
    from choreokit.events import Event, Registry

    base = prefix or unique()
    topic, out_topic = f"{base}.in", f"{base}.out"
    reg = Registry()

    class ItemAddedV1(Event, type="item.added", version=1, topic=topic, registry=reg):
        n: int

    class ItemAdded(Event, type="item.added", version=2, topic=topic, registry=reg):
        n: int
        label: str

    class ItemCounted(Event, type="item.counted", version=1, topic=topic, registry=reg):
        total: int = 0

    class ItemSeen(Event, type="item.seen", version=1, topic=out_topic, registry=reg):
        n: int

    reg.add_upcaster(ItemAddedV1, ItemAdded, lambda old: ItemAdded(n=old.n, label="from-v1"))
    return Catalog(reg, topic, out_topic, ItemAddedV1, ItemAdded, ItemCounted, ItemSeen)
