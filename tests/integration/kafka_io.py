"""Raw Kafka access for integration tests: what really is on a topic, byte for byte."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition


async def produce_raw(
    bootstrap: str,
    topic: str,
    records: Sequence[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]],
) -> None:
    """Send (key, value, headers) records in order, waiting for each acknowledgement."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for key, value, headers in records:
            await producer.send_and_wait(topic, value=value, key=key, headers=headers, partition=0)
    finally:
        await producer.stop()


async def read_topic(
    bootstrap: str, topic: str, count: int, *, timeout: float = 20.0
) -> list[ConsumerRecord[bytes, bytes]]:
    """Read ``count`` records of ``topic`` from the beginning (no group, no commits)."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=50,
    )
    await consumer.start()
    found: list[ConsumerRecord[bytes, bytes]] = []
    deadline = time.monotonic() + timeout
    try:
        while len(found) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{topic}: {len(found)} of {count} records after {timeout}s")
            batch = await consumer.getmany(timeout_ms=int(min(remaining, 0.5) * 1000))
            for records in batch.values():
                found.extend(records)
    finally:
        await consumer.stop()
    return sorted(found, key=lambda r: (r.partition, r.offset))


async def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """The next offset of every partition of ``topic``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic)
        if partitions is None:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        offsets = await consumer.end_offsets(tps)
        return {tp.partition: offset for tp, offset in offsets.items()}
    finally:
        await consumer.stop()


def headers_of(record: ConsumerRecord[bytes, bytes]) -> dict[str, str]:
    return {k: (v or b"").decode("utf-8", "replace") for k, v in record.headers}


MARKER = "choreo_test_marker"


async def all_records(bootstrap: str, topic: str, *, timeout: float = 20.0) -> list[Any]:
    """Every record of ``topic`` written so far, read up to a marker put on each partition.

    Counting by end offsets is not exact on the embedded broker (it reports
    the base offset + 1 of a partition's last batch, not the offset after its
    last record), so counts are taken by reading.
    """
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        partitions = sorted(await producer.partitions_for(topic))
        token = uuid.uuid4().hex.encode()
        for partition in partitions:
            await producer.send_and_wait(
                topic, value=b"", partition=partition, headers=[(MARKER, token)]
            )
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, fetch_max_wait_ms=50
    )
    await consumer.start()
    found: list[Any] = []
    waiting = set(partitions)
    try:
        consumer.assign([TopicPartition(topic, p) for p in partitions])
        await consumer.seek_to_beginning()
        deadline = asyncio.get_running_loop().time() + timeout
        while waiting:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{topic}: markers of partitions {waiting} not read")
            batches = await consumer.getmany(timeout_ms=200)
            for tp, records in batches.items():
                for record in records:
                    marker = dict(record.headers).get(MARKER)
                    if marker == token:
                        waiting.discard(tp.partition)
                    elif marker is None:
                        found.append(record)
    finally:
        await consumer.stop()
    return found


async def records_to_end(
    bootstrap: str, topic: str, *, isolation: str = "read_committed", timeout: float = 60.0
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of ``topic`` a reader of ``isolation`` sees, up to the end offsets as of now.

    A ``read_committed`` reader's end is the last stable offset: it waits for open
    transactions to end (or time out), and skips the records of aborted ones.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        isolation_level=isolation,
        fetch_max_wait_ms=100,
    )
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        assert tps, f"{topic} has no partitions"
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        found: list[ConsumerRecord[bytes, bytes]] = []
        deadline = time.monotonic() + timeout
        while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
            if time.monotonic() > deadline:
                raise AssertionError(f"{topic}: not read to its end within {timeout}s")
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                found.extend(records)
        return sorted(found, key=lambda r: (r.partition, r.offset))
    finally:
        await consumer.stop()


async def every_partition(bootstrap: str) -> set[str]:
    """Every partition of every topic but Kafka's internal ones, as ``topic[n]``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        return {
            f"{topic}[{partition}]"
            for topic in await consumer.topics()
            if not topic.startswith("__")
            for partition in consumer.partitions_for_topic(topic) or ()
        }
    finally:
        await consumer.stop()
