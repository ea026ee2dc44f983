"""The gateway without a broker: 503 within a bounded time, nothing published, no double publish.

Each test pauses (SIGSTOP) a broker of its own, so the session's broker is never touched.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from choreokit.events import KafkaSettings
from choreokit.services.runtime import EmbeddedBroker, free_port
from tests.integration.gateway_harness import (
    ids_of,
    key,
    running_gateway,
    structured,
    wait_healthy,
)
from tests.integration.kafka_io import all_records, end_offsets
from tests.support import catalog

STRUCTURED = {"Content-Type": "application/cloudevents+json"}
PUBLISH_TIMEOUT = 2.0
BOUND = 15.0  # generous: the machine is shared; the point is that it is bounded


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    broker = EmbeddedBroker(port=free_port(), log=tmp_path / "tansu.log")
    broker.start()
    yield broker
    broker.resume()
    broker.stop()


def event(event_id: str) -> str:
    return json.dumps(structured("item.added", event_id, {"n": 1, "label": "x"}, version=2))


async def test_a_paused_broker_is_answered_503_at_once_and_nothing_is_published(
    own_broker: EmbeddedBroker,
) -> None:
    cat = catalog()
    acme = key("acme", types=("item.*",))
    kafka = KafkaSettings(bootstrap=own_broker.bootstrap)
    async with (
        running_gateway(
            kafka, registry=cat.registry, keys=[acme], publish_timeout=f"{PUBLISH_TIMEOUT}s"
        ) as gateway,
        httpx.AsyncClient(base_url=gateway.url, timeout=60) as client,
    ):
        ok = await client.post("/events", headers={**acme.auth, **STRUCTURED}, content=event("a"))
        assert ok.status_code == 202
        before = await end_offsets(kafka.bootstrap, cat.topic)

        own_broker.pause()
        await wait_healthy(gateway.url, healthy=False)
        started = time.monotonic()
        refused = await client.post(
            "/events", headers={**acme.auth, **STRUCTURED}, content=event("b")
        )
        elapsed = time.monotonic() - started
        assert refused.status_code == 503, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.json()["type"] == "urn:choreokit:problem:broker-unavailable"
        assert elapsed < BOUND
        assert (await client.get("/healthz")).json()["status"] == "unavailable"

        own_broker.resume()
        await wait_healthy(gateway.url)
        assert await end_offsets(kafka.bootstrap, cat.topic) == before
        assert ids_of(await all_records(kafka.bootstrap, cat.topic)) == ["acme:a"]


async def test_a_broker_that_stops_mid_request_is_answered_503_and_a_retry_publishes_once(
    own_broker: EmbeddedBroker,
) -> None:
    """The record the producer holds may still land later: the retry must not add a second."""
    cat = catalog()
    acme = key("acme", types=("item.*",))
    kafka = KafkaSettings(bootstrap=own_broker.bootstrap)
    async with (
        running_gateway(
            kafka,
            registry=cat.registry,
            keys=[acme],
            publish_timeout=f"{PUBLISH_TIMEOUT}s",
        ) as gateway,
        httpx.AsyncClient(base_url=gateway.url, timeout=60) as client,
    ):
        warm = await client.post("/events", headers={**acme.auth, **STRUCTURED}, content=event("w"))
        assert warm.status_code == 202
        own_broker.pause()
        started = time.monotonic()
        refused = await client.post(
            "/events", headers={**acme.auth, **STRUCTURED}, content=event("late")
        )
        elapsed = time.monotonic() - started
        assert refused.status_code == 503, refused.text
        assert elapsed < BOUND

        own_broker.resume()
        await wait_healthy(gateway.url)
        retry = await client.post(
            "/events", headers={**acme.auth, **STRUCTURED}, content=event("late")
        )
        assert retry.status_code == 202, retry.text
        assert sorted(ids_of(await all_records(kafka.bootstrap, cat.topic))) == [
            "acme:late",
            "acme:w",
        ]


async def test_a_gateway_started_without_a_broker_answers_503_until_one_appears(
    tmp_path: Path,
) -> None:
    cat = catalog()
    acme = key("acme", types=("item.*",))
    port = free_port()
    kafka = KafkaSettings(bootstrap=f"127.0.0.1:{port}")
    async with (
        running_gateway(kafka, registry=cat.registry, keys=[acme], wait_for_kafka=False) as gateway,
        httpx.AsyncClient(base_url=gateway.url, timeout=60) as client,
    ):
        started = time.monotonic()
        refused = await client.post(
            "/events", headers={**acme.auth, **STRUCTURED}, content=event("early")
        )
        assert refused.status_code == 503
        assert time.monotonic() - started < BOUND
        assert (await client.get("/healthz")).status_code == 503

        with EmbeddedBroker(port=port, log=tmp_path / "late-tansu.log"):
            await wait_healthy(gateway.url, timeout=60)
            accepted = await client.post(
                "/events", headers={**acme.auth, **STRUCTURED}, content=event("early")
            )
            assert accepted.status_code == 202
            assert ids_of(await all_records(kafka.bootstrap, cat.topic)) == ["acme:early"]
