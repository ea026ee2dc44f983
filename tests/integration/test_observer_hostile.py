"""Hostile records never stop the observer: each is rejected on its own and shown, the
records around it are recorded, and the API answers 200 (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from choreokit.events import KafkaSettings, encode_headers, encode_payload
from choreokit.events._kafka import ensure_topics
from choreokit.services.example.contracts.orders import Address, OrderLine, OrderPlaced
from tests import observer_fixtures
from tests.observer_fixtures import running_observer
from tests.support import envelope_for

private_broker = observer_fixtures.private_broker
private_kafka = observer_fixtures.private_kafka
postgres_databases = observer_fixtures.postgres_databases

ORDER = OrderPlaced(
    order_id="o-1",
    customer_id="c-1",
    lines=(OrderLine(sku="sku-1", quantity=1, unit_price_cents=100),),
    ship_to=Address(country="DE", postal_code="10115"),
)


def headers(**replace: bytes) -> list[tuple[str, bytes]]:
    found = dict(encode_headers(envelope_for(ORDER)))
    found.update({k.replace("__", "-"): v for k, v in replace.items()})
    return list(found.items())


def structured(**attributes: Any) -> bytes:
    doc = {"specversion": "1.0", "id": "s-1", "source": "/x", "type": "order.placed"}
    doc.update(attributes)
    return json.dumps(doc).encode()


HOSTILE: list[tuple[str, list[tuple[str, bytes]], bytes, int | None]] = [
    ("far future time", headers(ce_time=b"9999-12-31T23:59:59+00:00"), b"{}", None),
    ("year one", headers(ce_time=b"0001-01-01T00:00:00-23:59"), b"{}", None),
    ("far past time", headers(ce_time=b"1000-01-01T00:00:00Z"), b"{}", None),
    ("bidi override source", headers(ce_source="/services/\u202eorders".encode()), b"{}", None),
    ("record timestamp beyond 64-bit dates", headers(), encode_payload(ORDER), 2**62),
    (
        "lone surrogate in a structured payload",
        [("content-type", b"application/cloudevents+json")],
        structured(data={"order_id": "\ud800"}),
        None,
    ),
    # A type without sensitive fields, whose payload the observer keeps as it came (one with
    # sensitive fields and a payload that is not JSON is not kept at all: nothing to refuse).
    (
        "NUL in a binary payload",
        headers(ce_type=b"payment.declined", ce_dataversion=b"1"),
        b'{"order_id": "\x00"}',
        None,
    ),
]


@pytest.fixture(params=["sqlite", "postgresql"])
def observer_db(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_databases: Callable[[], str]
) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'observer.sqlite3'}"
    return postgres_databases()


async def test_hostile_records_are_rejected_one_by_one_and_the_api_stays_up(
    private_kafka: KafkaSettings, observer_db: str, tmp_path: Path
) -> None:
    await ensure_topics(private_kafka, ["orders"])
    good = envelope_for(ORDER, correlation_id="good-flow")
    producer = AIOKafkaProducer(bootstrap_servers=private_kafka.bootstrap, acks="all")
    await producer.start()
    try:
        for _, hdrs, value, timestamp in HOSTILE:
            await producer.send_and_wait(
                "orders", value=value, key=b"k", headers=hdrs, partition=0, timestamp_ms=timestamp
            )
        await producer.send_and_wait(
            "orders",
            value=encode_payload(ORDER),
            key=b"good-flow",
            headers=encode_headers(good),
            partition=0,
        )
    finally:
        await producer.stop()
    async with running_observer(private_kafka, observer_db, tmp_path) as observer:
        flow = await observer.wait(
            "the good event after the hostile ones",
            lambda f: len(f["events"]) >= 1,
            path="/api/flows/good-flow",
        )
        assert flow["correlation_id"] == "good-flow"
        rejects = await observer.get("/api/rejects", limit=100)
        by_offset = {r["offset"]: r for r in rejects["items"]}
        for offset in range(4):  # times out of range and a bidi override: the codec's bounds
            assert by_offset[offset]["error_type"] == "InvalidEnvelopeError", by_offset
        if observer_db.startswith("postgresql"):
            # PostgreSQL's text cannot hold NUL: that record alone fails in the store and
            # is shown as a reject; the batch it came in is recorded without it.
            assert by_offset[6]["error_type"] == "DBAPIError"
            assert "could not record" in by_offset[6]["error_message"]
            assert "INSERT" not in by_offset[6]["error_message"]  # no SQL, no parameters
        assert observer.app.ready.is_set()
        async with httpx.AsyncClient(base_url=observer.url, timeout=30) as client:
            for path in ("/api/flows", "/api/counts", "/api/rejects", "/api/facets", "/healthz"):
                response = await client.get(path)
                assert response.status_code == 200, (path, response.text)
            flows = (await client.get("/api/flows", params={"limit": 100})).json()
            for item in flows["items"]:
                detail = await client.get(f"/api/flows/{item['correlation_id']}")
                assert detail.status_code == 200, detail.text
