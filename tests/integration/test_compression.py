"""Records compressed with each of Kafka's codecs reach a service's handler: other systems'
producers compress (franz-go with snappy by default; lz4 and zstd are common settings)."""

from __future__ import annotations

import asyncio
import json

import pytest
from confluent_kafka import Producer

from choreokit.events import HandlerContext, KafkaSettings, Service
from tests.support import catalog, unique, wait_for


@pytest.mark.engines("tansu", "kafka")
@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
async def test_a_compressed_record_is_handled(kafka: KafkaSettings, codec: str) -> None:
    cat = catalog()
    received: list[tuple[object, str]] = []
    consumer = Service(unique("consumer"), registry=cat.registry, settings=kafka)

    @consumer.handler(cat.v2)
    async def on_item(event: object, ctx: HandlerContext) -> None:
        received.append((event, ctx.envelope.id))

    # librdkafka carries every codec itself: the test depends on the consumer's codecs only.
    producer = Producer({"bootstrap.servers": kafka.bootstrap, "compression.type": codec})
    headers: list[tuple[str, str | bytes | None]] = [
        ("content-type", b"application/json"),
        ("ce_specversion", b"1.0"),
        ("ce_id", f"{codec}-1".encode()),
        ("ce_source", b"/tests/compression"),
        ("ce_type", b"item.added"),
        ("ce_dataversion", b"2"),
    ]
    async with consumer:
        value = json.dumps({"n": 3, "label": codec * 50}).encode()  # worth compressing
        try:
            producer.produce(cat.topic, value=value, key=b"k", headers=headers)
            assert await asyncio.to_thread(producer.flush, 30) == 0, "not delivered in 30 s"
        finally:
            producer.close()
        await wait_for(lambda: len(received) == 1, what=f"the {codec} record to be handled")
    assert received == [(cat.v2(n=3, label=codec * 50), f"{codec}-1")]
