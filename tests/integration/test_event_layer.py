"""The event layer on both engines (Tansu and Apache Kafka): envelope, upcasting, groups, flows."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from choreokit.events import Envelope, HandlerContext, KafkaSettings, Service
from tests.integration.kafka_io import headers_of, produce_raw, read_topic
from tests.support import catalog, unique, wait_for

pytestmark = pytest.mark.engines("tansu", "kafka")


async def test_every_envelope_attribute_round_trips(kafka: KafkaSettings) -> None:
    """What a service publishes arrives, attribute for attribute, on the wire and at a handler."""
    cat = catalog()
    received: list[tuple[object, Envelope]] = []
    consumer = Service(unique("consumer"), registry=cat.registry, settings=kafka)

    @consumer.handler(cat.v2)
    async def on_item(event: object, ctx: HandlerContext) -> None:
        received.append((event, ctx.envelope))

    producer = Service("producer", registry=cat.registry, settings=kafka, publishes=[cat.v2])
    async with consumer, producer:
        sent = await producer.publish(
            cat.v2(n=7, label="seven"), correlation_id="flow-42", causation_id="cause-41"
        )
        await wait_for(lambda: len(received) == 1, what="the handler to run")

    event, envelope = received[0]
    assert event == cat.v2(n=7, label="seven")
    assert envelope == sent
    assert envelope.source == "/services/producer"
    assert envelope.type == "item.added"
    assert envelope.dataversion == 2
    assert envelope.correlation_id == "flow-42"
    assert envelope.causation_id == "cause-41"
    assert abs((datetime.now(UTC) - envelope.time).total_seconds()) < 60

    [raw] = await read_topic(kafka.bootstrap, cat.topic, 1)
    assert raw.key == b"flow-42"
    assert json.loads(raw.value) == {"n": 7, "label": "seven"}
    assert headers_of(raw) == {
        "content-type": "application/json",
        "ce_specversion": "1.0",
        "ce_id": sent.id,
        "ce_source": "/services/producer",
        "ce_type": "item.added",
        "ce_dataversion": "2",
        "ce_time": sent.time.isoformat(),
        "ce_correlationid": "flow-42",
        "ce_causationid": "cause-41",
    }


async def test_a_root_event_starts_its_own_flow(kafka: KafkaSettings) -> None:
    cat = catalog()
    producer = Service("producer", registry=cat.registry, settings=kafka, publishes=[cat.v2])
    async with producer:
        envelope = await producer.publish(cat.v2(n=1, label="x"))
    assert envelope.correlation_id == envelope.id
    assert envelope.causation_id is None
    assert len(envelope.id) == 36
    assert envelope.id[14] == "7"  # UUIDv7


async def test_a_v1_record_reaches_a_v2_handler_upcast(kafka: KafkaSettings) -> None:
    cat = catalog()
    received: list[object] = []
    consumer = Service(unique("consumer"), registry=cat.registry, settings=kafka)

    @consumer.handler(cat.v2)
    async def on_item(event: object) -> None:
        received.append(event)

    old_client = Service("old-client", registry=cat.registry, settings=kafka, publishes=[cat.v1])
    async with old_client, consumer:
        await old_client.publish(cat.v1(n=1))
        await old_client.publish(cat.v1(n=2))
        await wait_for(lambda: len(received) == 2, what="both v1 events")
    # Two flows, so two keys and possibly two partitions: no order between them.
    assert sorted(received, key=lambda e: e.n) == [  # type: ignore[attr-defined]
        cat.v2(n=1, label="from-v1"),
        cat.v2(n=2, label="from-v1"),
    ]
    assert consumer.stats.dead_lettered == 0


async def test_two_groups_each_receive_every_event(kafka: KafkaSettings) -> None:
    cat = catalog()
    seen: dict[str, list[int]] = {"billing": [], "audit": []}
    groups = []
    for name in seen:
        group = Service(f"{name}-{unique()}", registry=cat.registry, settings=kafka)

        async def handle(event: object, _name: str = name) -> None:
            seen[_name].append(event.n)  # type: ignore[attr-defined]

        group.handler(cat.v2)(handle)
        groups.append(group)
    producer = Service("producer", registry=cat.registry, settings=kafka, publishes=[cat.v2])
    async with groups[0], groups[1], producer:
        for n in range(20):
            await producer.publish(cat.v2(n=n, label="x"))
        await wait_for(
            lambda: len(seen["billing"]) == 20 and len(seen["audit"]) == 20,
            what="both groups to see all 20 events",
        )
    assert sorted(seen["billing"]) == list(range(20))
    assert sorted(seen["audit"]) == list(range(20))


async def test_a_flow_keeps_its_correlation_across_hops(kafka: KafkaSettings) -> None:
    """A handler's published events join the flow and name the handled event as their cause."""
    cat = catalog()
    first = Service(unique("first"), registry=cat.registry, settings=kafka, publishes=[cat.out])

    @first.handler(cat.v2)
    async def relay(event: object, ctx: HandlerContext) -> None:
        await first.publish(cat.out(n=event.n))  # type: ignore[attr-defined]

    arrived: list[Envelope] = []
    second = Service(unique("second"), registry=cat.registry, settings=kafka)

    @second.handler(cat.out)
    async def land(event: object, ctx: HandlerContext) -> None:
        arrived.append(ctx.envelope)

    producer = Service("producer", registry=cat.registry, settings=kafka, publishes=[cat.v2])
    async with first, second, producer:
        root = await producer.publish(cat.v2(n=3, label="x"))
        await wait_for(lambda: len(arrived) == 1, what="the second hop")
    [hop] = arrived
    assert hop.correlation_id == root.id
    assert hop.causation_id == root.id
    assert hop.source == f"/services/{first.name}"
    [raw] = await read_topic(kafka.bootstrap, cat.out_topic, 1)
    assert raw.key == root.id.encode()


async def test_structured_mode_from_another_sdk_is_handled(kafka: KafkaSettings) -> None:
    cat = catalog()
    received: list[tuple[object, Envelope]] = []
    consumer = Service(unique("consumer"), registry=cat.registry, settings=kafka)

    @consumer.handler(cat.v2)
    async def on_item(event: object, ctx: HandlerContext) -> None:
        received.append((event, ctx.envelope))

    document = {
        "specversion": "1.0",
        "id": "partner-1",
        "source": "urn:partner:checkout",
        "type": "item.added",
        "dataversion": "2",
        "time": "2026-11-21T12:00:00Z",
        "correlationid": "partner-flow",
        "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "data": {"n": 9, "label": "structured"},
    }
    async with consumer:
        await produce_raw(
            kafka.bootstrap,
            cat.topic,
            [
                (
                    b"partner-flow",
                    json.dumps(document).encode(),
                    [("content-type", b"application/cloudevents+json")],
                )
            ],
        )
        await wait_for(lambda: len(received) == 1, what="the structured event")
    event, envelope = received[0]
    assert event == cat.v2(n=9, label="structured")
    assert envelope.id == "partner-1"
    assert envelope.correlation_id == "partner-flow"
    assert envelope.traceparent == "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
