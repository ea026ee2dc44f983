"""What the gateway publishes, over real HTTP and on the real broker: the Kafka contract, the
header allowlist, correlation ownership, deduplication of retries, rate limits."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest_asyncio

from choreokit.events import HandlerContext, KafkaSettings, Service, new_event_id
from choreokit.services.gateway import GatewayApp
from tests.integration.gateway_harness import (
    Key,
    binary_headers,
    ids_of,
    key,
    running_gateway,
    structured,
)
from tests.integration.kafka_io import all_records, end_offsets, headers_of, read_topic
from tests.support import Catalog, catalog, unique, wait_for

STRUCTURED = {"Content-Type": "application/cloudevents+json"}
BATCH = {"Content-Type": "application/cloudevents-batch+json"}
CONTRACT_HEADERS = {
    "content-type",
    "ce_specversion",
    "ce_id",
    "ce_source",
    "ce_type",
    "ce_dataversion",
    "ce_time",
    "ce_correlationid",
}


@dataclass(frozen=True)
class Running:
    cat: Catalog
    acme: Key
    internal: Key
    gateway: GatewayApp
    client: httpx.AsyncClient
    bootstrap: str

    async def ids(self) -> list[str]:
        """The ce_id of every record on the topic so far (read, not counted by offsets)."""
        return ids_of(await all_records(self.bootstrap, self.cat.topic))


@pytest_asyncio.fixture
async def running(kafka: KafkaSettings) -> AsyncIterator[Running]:
    cat = catalog()
    acme = key("acme", types=("item.*",))
    internal = key("internal", types=("item.*",), trusted=True)
    async with (
        running_gateway(kafka, registry=cat.registry, keys=[acme, internal]) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as client,
    ):
        yield Running(cat, acme, internal, gateway, client, kafka.bootstrap)


async def test_binary_mode_publishes_the_kafka_contract(running: Running) -> None:
    response = await running.client.post(
        "/events",
        headers={
            **running.acme.auth,
            **binary_headers("item.added", "order-7", version=2, time="2026-11-21T12:00:00+01:00"),
        },
        content=b'{"n": 7, "label": "seven", "unknown": "dropped"}',
    )
    assert response.status_code == 202, response.text
    answer = response.json()
    assert answer["ids"] == ["acme:order-7"]
    [event] = answer["events"]
    assert event["received_id"] == "order-7"
    assert event["correlationid"] == "acme:order-7"
    assert event["duplicate"] is False

    [record] = await read_topic(running.bootstrap, running.cat.topic, 1)
    assert (record.partition, record.offset) == (event["partition"], event["offset"])
    assert record.key == b"acme:order-7"
    assert json.loads(record.value) == {"n": 7, "label": "seven"}
    assert headers_of(record) == {
        "content-type": "application/json",
        "ce_specversion": "1.0",
        "ce_id": "acme:order-7",
        "ce_source": "/partners/acme",
        "ce_type": "item.added",
        "ce_dataversion": "2",
        "ce_time": "2026-11-21T12:00:00+01:00",
        "ce_correlationid": "acme:order-7",
    }


async def test_structured_and_batch_modes_publish_the_same_contract(running: Running) -> None:
    one = structured("item.added", "s-1", {"n": 1, "label": "a"}, version=2)
    batch = [
        structured("item.added", "b-1", {"n": 2}, version=1),
        structured("item.counted", "b-2", {"total": 3}, causationid="b-1", correlationid="s-1"),
    ]
    first = await running.client.post(
        "/events", headers={**running.acme.auth, **STRUCTURED}, content=json.dumps(one)
    )
    second = await running.client.post(
        "/events", headers={**running.acme.auth, **BATCH}, content=json.dumps(batch)
    )
    assert (first.status_code, second.status_code) == (202, 202)
    assert second.json()["ids"] == ["acme:b-1", "acme:b-2"]

    records = await read_topic(running.bootstrap, running.cat.topic, 3)
    by_id = {headers_of(r)["ce_id"]: r for r in records}
    assert set(headers_of(by_id["acme:s-1"])) == CONTRACT_HEADERS
    assert headers_of(by_id["acme:b-1"])["ce_dataversion"] == "1"
    counted = headers_of(by_id["acme:b-2"])
    assert counted["ce_correlationid"] == "acme:s-1"  # joined its own earlier flow
    assert counted["ce_causationid"] == "acme:b-1"
    assert by_id["acme:b-2"].key == b"acme:s-1"


async def test_only_allowlisted_attributes_reach_kafka(running: Running) -> None:
    """Reply topics, internal headers and unknown extensions never reach the record."""
    hostile = {
        "reply_to": "attacker.topic",
        "correlation_id": "someone-elses-flow",
        "choreo_dlq_original_topic": "orders",
        "kafka_key": "x",
        "content-encoding": "identity",
        "ce-replyto": "attacker.topic",
        "ce-choreo_dlq_error_type": "Forged",
        "ce-partitionkey": "p",
        "ce-subject": "s",
        "ce-traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    }
    response = await running.client.post(
        "/events",
        headers={**running.acme.auth, **binary_headers("item.added", "h-1", version=2), **hostile},
        content=b'{"n": 1, "label": "x"}',
    )
    assert response.status_code == 202, response.text
    assert response.json()["events"][0]["ignored"] == sorted(
        ["replyto", "choreo_dlq_error_type", "partitionkey", "subject", "traceparent"]
    )
    doc = structured(
        "item.added",
        "h-2",
        {"n": 2, "label": "y"},
        version=2,
        replyto="attacker.topic",
        reply_to="attacker.topic",
        choreo_dlq_error_type="Forged",
        partitionkey="p",
    )
    response = await running.client.post(
        "/events", headers={**running.acme.auth, **STRUCTURED}, content=json.dumps(doc)
    )
    assert response.status_code == 202, response.text

    for record in await read_topic(running.bootstrap, running.cat.topic, 2):
        assert set(headers_of(record)) == CONTRACT_HEADERS  # no traceparent: untrusted, no SDK


async def test_an_untrusted_key_owns_only_the_flows_it_started(running: Running) -> None:
    internal_flow = new_event_id()
    cases = [
        ("own-1", None, "acme:own-1"),  # starts a flow: the event's own id
        ("own-2", "own-1", "acme:own-1"),  # continues it
        ("own-3", "acme:own-1", "acme:own-1"),  # names it as answered by the gateway
        ("own-4", internal_flow, f"acme:{internal_flow}"),  # cannot join an internal flow
        ("own-5", "globex:flow-9", "acme:globex:flow-9"),  # nor another key's
    ]
    for event_id, correlation, expected in cases:
        extra = {"correlationid": correlation} if correlation else {}
        doc = structured("item.added", event_id, {"n": 1, "label": "x"}, version=2, **extra)
        response = await running.client.post(
            "/events", headers={**running.acme.auth, **STRUCTURED}, content=json.dumps(doc)
        )
        assert response.json()["events"][0]["correlationid"] == expected, event_id

    records = await read_topic(running.bootstrap, running.cat.topic, len(cases))
    seen = {headers_of(r)["ce_id"]: (headers_of(r)["ce_correlationid"], r.key) for r in records}
    for event_id, _, expected in cases:
        assert seen[f"acme:{event_id}"] == (expected, expected.encode())


async def test_a_trusted_key_may_join_any_flow(running: Running) -> None:
    internal_flow = new_event_id()
    doc = structured(
        "item.added",
        "t-1",
        {"n": 1, "label": "x"},
        version=2,
        correlationid=internal_flow,
        causationid=internal_flow,
    )
    response = await running.client.post(
        "/events", headers={**running.internal.auth, **STRUCTURED}, content=json.dumps(doc)
    )
    assert response.status_code == 202
    [record] = await read_topic(running.bootstrap, running.cat.topic, 1)
    headers = headers_of(record)
    assert headers["ce_id"] == "internal:t-1"  # ids are always per key
    assert headers["ce_correlationid"] == internal_flow
    assert headers["ce_causationid"] == internal_flow


async def test_a_retry_with_the_same_id_yields_one_event(running: Running) -> None:
    request: dict[str, Any] = {
        "headers": {**running.acme.auth, **binary_headers("item.added", "retry-1", version=2)},
        "content": b'{"n": 1, "label": "x"}',
    }
    first = await running.client.post("/events", **request)
    second = await running.client.post("/events", **request)
    assert (first.status_code, second.status_code) == (202, 202)
    assert second.json()["events"][0]["duplicate"] is True
    assert second.json()["ids"] == first.json()["ids"]
    assert second.json()["events"][0]["offset"] == first.json()["events"][0]["offset"]
    assert await running.ids() == ["acme:retry-1"]

    batch = [
        structured("item.added", "retry-1", {"n": 1, "label": "x"}, version=2),  # published above
        structured("item.added", "retry-2", {"n": 2, "label": "y"}, version=2),
    ]
    again = await running.client.post(
        "/events", headers={**running.acme.auth, **BATCH}, content=json.dumps(batch)
    )
    assert [e["duplicate"] for e in again.json()["events"]] == [True, False]
    assert sorted(await running.ids()) == ["acme:retry-1", "acme:retry-2"]


async def test_concurrent_retries_with_the_same_id_yield_one_event(running: Running) -> None:
    request: dict[str, Any] = {
        "headers": {**running.acme.auth, **binary_headers("item.added", "race-1", version=2)},
        "content": b'{"n": 1, "label": "x"}',
    }
    answers = await asyncio.gather(*(running.client.post("/events", **request) for _ in range(8)))
    assert {a.status_code for a in answers} == {202}
    assert sorted(a.json()["events"][0]["duplicate"] for a in answers) == [False] + [True] * 7
    assert await running.ids() == ["acme:race-1"]


async def test_an_id_reused_for_other_content_is_a_conflict(running: Running) -> None:
    headers = {**running.acme.auth, **binary_headers("item.added", "reused", version=2)}
    first = await running.client.post("/events", headers=headers, content=b'{"n":1,"label":"x"}')
    assert first.status_code == 202
    before = await end_offsets(running.bootstrap, running.cat.topic)
    second = await running.client.post("/events", headers=headers, content=b'{"n":2,"label":"x"}')
    assert second.status_code == 409
    assert second.headers["content-type"] == "application/problem+json"
    assert second.json()["errors"][0]["attribute"] == "id"
    assert await end_offsets(running.bootstrap, running.cat.topic) == before
    assert await running.ids() == ["acme:reused"]


async def test_a_batch_is_answered_once_every_event_is_acknowledged(running: Running) -> None:
    batch = [
        structured("item.added", f"all-{n}", {"n": n, "label": "x"}, version=2) for n in range(5)
    ]
    response = await running.client.post(
        "/events", headers={**running.acme.auth, **BATCH}, content=json.dumps(batch)
    )
    assert response.status_code == 202
    events = response.json()["events"]
    # Each answer names where its record is, and it is there.
    records = {
        (r.partition, r.offset): r for r in await all_records(running.bootstrap, running.cat.topic)
    }
    assert len(records) == 5
    for event in events:
        record = records[(event["partition"], event["offset"])]
        assert dict(record.headers)["ce_id"].decode() == event["id"]


async def test_published_events_are_handled_by_a_service(
    running: Running, kafka: KafkaSettings
) -> None:
    """Events from the gateway are ordinary events to a consuming service (v1 arrives upcast)."""
    handled: list[tuple[object, str, str]] = []
    consumer = Service(unique("consumer"), registry=running.cat.registry, settings=kafka)

    @consumer.handler(running.cat.v2)
    async def on_item(event: object, ctx: HandlerContext) -> None:
        handled.append((event, ctx.envelope.id, ctx.envelope.source))

    async with consumer:
        response = await running.client.post(
            "/events",
            headers={**running.acme.auth, **BATCH},
            content=json.dumps(
                [
                    structured("item.added", "h1", {"n": 1}, version=1),
                    structured("item.added", "h2", {"n": 2, "label": "two"}, version=2),
                ]
            ),
        )
        assert response.status_code == 202
        await wait_for(lambda: len(handled) == 2, what="both events to be handled")
    assert sorted((e.n, e.label, i, s) for e, i, s in handled) == [  # type: ignore[attr-defined]
        (1, "from-v1", "acme:h1", "/partners/acme"),
        (2, "two", "acme:h2", "/partners/acme"),
    ]


async def test_a_key_over_its_rate_is_told_when_to_retry(kafka: KafkaSettings) -> None:
    cat = catalog()
    slow = key("slow", types=("item.*",), rate=0.01, burst=2)
    async with (
        running_gateway(kafka, registry=cat.registry, keys=[slow]) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as client,
    ):
        answers = []
        for n in range(3):
            doc = structured("item.added", f"r-{n}", {"n": n, "label": "x"}, version=2)
            before = sum((await end_offsets(kafka.bootstrap, cat.topic)).values())
            answers.append(
                await client.post(
                    "/events", headers={**slow.auth, **STRUCTURED}, content=json.dumps(doc)
                )
            )
        assert [a.status_code for a in answers] == [202, 202, 429]
        limited = answers[2]
        assert limited.headers["content-type"] == "application/problem+json"
        assert int(limited.headers["retry-after"]) >= 1
        assert sum((await end_offsets(kafka.bootstrap, cat.topic)).values()) == before


async def test_health_metrics_and_openapi_are_served(running: Running) -> None:
    await running.client.post(
        "/events",
        headers={**running.acme.auth, **binary_headers("item.added", "m-1", version=2)},
        content=b'{"n": 1, "label": "x"}',
    )
    await running.client.post("/events", headers=STRUCTURED, content=b"{}")
    health = await running.client.get("/healthz")
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "kafka": "connected"}

    metrics = await running.client.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert 'choreo_gateway_requests_total{mode="binary",status="202"} 1.0' in text
    assert 'choreo_gateway_requests_total{mode="unknown",status="401"} 1.0' in text
    assert 'choreo_gateway_events_total{outcome="published",type="item.added"} 1.0' in text
    assert "choreo_gateway_kafka_up 1.0" in text
    assert "choreo_gateway_request_duration_seconds_bucket" in text

    openapi = (await running.client.get("/openapi.json")).json()
    operation = openapi["paths"]["/events"]["post"]
    assert set(operation["requestBody"]["content"]) == {
        "application/json",
        "application/cloudevents+json",
        "application/cloudevents-batch+json",
    }
    assert {"202", "400", "401", "403", "409", "413", "415", "422", "429", "503"} <= set(
        operation["responses"]
    )
    assert openapi["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
