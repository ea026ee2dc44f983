"""Where the engines differ, pinned: idempotence, the group protocol, what a broker answers.

Each test names the engine it runs on in its id. See docs/broker.md for what
the differences mean for services.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from choreokit.events import HandlerContext, Idempotence, KafkaSettings, Service
from tests.integration.kafka_io import read_topic
from tests.support import catalog, unique, wait_for

IDEMPOTENCE_DECISION = {
    "kafka": "producer idempotence on: broker granted a producer id",
    "tansu": "producer idempotence off: broker refused InitProducerId",
}


@pytest.mark.engines("tansu", "kafka")
async def test_auto_idempotence_is_on_against_kafka_and_off_against_tansu(
    kafka: KafkaSettings, engine: str, caplog: pytest.LogCaptureFixture
) -> None:
    """With ``CHOREO_KAFKA_IDEMPOTENCE=auto`` the service asks the broker for a producer id:
    Apache Kafka grants one (idempotent writes), Tansu refuses; the log says which, and why."""
    assert kafka.idempotence is Idempotence.AUTO
    cat = catalog()
    producer = Service(
        unique("producer"), registry=cat.registry, settings=kafka, publishes=[cat.v2]
    )
    with caplog.at_level(logging.INFO, logger="choreokit.kafka"):
        async with producer:
            sent = await producer.publish(cat.v2(n=1, label="once"))
    decisions = [r.getMessage() for r in caplog.records if "producer idempotence" in r.getMessage()]
    assert len(decisions) == 1, decisions
    assert decisions[0].startswith(IDEMPOTENCE_DECISION[engine]), decisions
    [record] = await read_topic(kafka.bootstrap, cat.topic, 1)
    assert dict(record.headers)["ce_id"].decode() == sent.id


@pytest.mark.engines("kafka")
async def test_idempotence_forced_on_works_against_kafka(kafka: KafkaSettings) -> None:
    """``CHOREO_KAFKA_IDEMPOTENCE=on`` needs no probe on Apache Kafka: records go through."""
    settings = kafka.model_copy(update={"idempotence": Idempotence.ON})
    cat = catalog()
    producer = Service(
        unique("producer"), registry=cat.registry, settings=settings, publishes=[cat.v2]
    )
    async with producer:
        for n in range(20):
            await producer.publish(cat.v2(n=n, label="x"))
    records = await read_topic(kafka.bootstrap, cat.topic, 20)
    assert sorted(json.loads(r.value or b"")["n"] for r in records) == list(range(20))


@pytest.mark.engines("kafka")
async def test_services_join_classic_groups_and_kafka_answers_offset_fetches(
    kafka: KafkaSettings,
) -> None:
    """aiokafka speaks the classic group protocol; Apache Kafka 4.1 still serves it (its Java
    client defaults to the new ``consumer`` protocol, KIP-848). Unlike Tansu, Kafka answers
    the admin client's OffsetFetch, so committed progress is visible from outside."""
    cat = catalog()
    handled: list[int] = []
    group = unique("group")
    service = Service(group, registry=cat.registry, settings=kafka)

    @service.handler(cat.v2)
    async def on_item(event: object, ctx: HandlerContext) -> None:
        handled.append(event.n)  # type: ignore[attr-defined]

    producer = Service("producer", registry=cat.registry, settings=kafka, publishes=[cat.v2])
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
    await admin.start()
    try:
        async with service, producer:
            for n in range(10):
                await producer.publish(cat.v2(n=n, label="x"), correlation_id=f"flow-{n}")
            await wait_for(lambda: len(handled) == 10, what="the 10 events")
            [description] = await admin.describe_consumer_groups([group])
            committed: dict[TopicPartition, int] = {}

            async def fetch_committed() -> bool:
                offsets = await admin.list_consumer_group_offsets(group)
                committed.clear()
                committed.update({tp: meta.offset for tp, meta in offsets.items()})
                return sum(committed.values()) == 10

            await wait_for_async(fetch_committed, what="the group's commits to be fetched")
        [group_info] = description.to_object()["groups"]
        assert group_info["error_code"] == 0
        assert group_info["protocol_type"] == "consumer"  # the classic protocol's type
        assert group_info["state"] == "Stable"
        assert len(group_info["members"]) == 1
        assert {tp.topic for tp in committed} == {cat.topic}
    finally:
        await admin.close()


async def wait_for_async(
    check: Callable[[], Awaitable[bool]], *, what: str, timeout: float = 20.0
) -> None:
    """Await ``check()`` until it returns true, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.1)  # noqa: sleep-ok - between admin requests
