"""Acceptance: every attack of the hostile-input probe, replayed through the gateway and
straight to Kafka against the running example system (`choreo dev`), changes nothing of
another flow's state; the observer stays up, answers 200 and shows each hostile record
as a reject or a key conflict; every attack flow ends: failed (nothing to compensate)
where a consumer's refusal became the flow's failure, rejected where consumers refused
every event and nothing came of it, announced by saga.rejected."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from choreokit.events import Envelope, encode_headers
from choreokit.services.gateway import mint_key
from choreokit.services.gateway._keys import entry_document
from tests.e2e.system import Dev, rows, running_dev
from tests.support import wait_until

pytestmark = pytest.mark.slow

ENDED = {"completed", "failed", "compensated", "rejected"}
LINE = {"sku": "SKU-1", "quantity": 1, "unit_price_cents": 1000}
SHIP_TO = {"country": "DE", "postal_code": "10115"}


class Keys:
    """A start-only partner key and an untrusted key that may publish every order type."""

    def __init__(self) -> None:
        self.acme = mint_key("acme", starts=("order.placed",), sources=("/partners/acme/*",))
        self.rogue = mint_key("rogue", types=("order.*",), sources=("/partners/rogue/*",))

    def document(self) -> str:
        return json.dumps({"keys": [entry_document(k.entry) for k in (self.acme, self.rogue)]})


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys()


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory, keys: Keys) -> Iterator[Dev]:
    env = {
        "CHOREO_GATEWAY_KEYS": keys.document(),
        # Flows refused by key conflicts only are judged rejected at their deadline: soon.
        "CHOREO_OBSERVER_TIMEOUT": "15s",
        "CHOREO_SHIPPING_CARRIER_FAILURE_RATE": "0",
    }
    with running_dev(tmp_path_factory.mktemp("hostile") / "dev", env) as running:
        yield running


def observer(dev: Dev) -> str:
    return f"http://127.0.0.1:{dev.env['CHOREO_OBSERVER_PORT']}"


def gateway(dev: Dev) -> str:
    return f"http://127.0.0.1:{dev.env['CHOREO_GATEWAY_PORT']}"


def post_event(dev: Dev, token: str, **attributes: Any) -> httpx.Response:
    event = {"specversion": "1.0", "id": uuid.uuid4().hex, **attributes}
    return httpx.post(
        f"{gateway(dev)}/events",
        content=json.dumps(event),
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/cloudevents+json",
        },
        timeout=30,
    )


def order_data(order_id: str, **line: Any) -> dict[str, Any]:
    return {
        "order_id": order_id,
        "customer_id": "c-1",
        "lines": [LINE | line],
        "ship_to": SHIP_TO,
    }


def flow(dev: Dev, correlation_id: str) -> dict[str, Any] | None:
    response = httpx.get(f"{observer(dev)}/api/flows/{correlation_id}", timeout=10)
    if response.status_code == 404:
        return None
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def announced(dev: Dev, correlation_id: str) -> list[tuple[str, bool]]:
    found = flow(dev, correlation_id)
    assert found is not None
    return [(lc["type"], lc["observed"]) for lc in found["lifecycle"]]


def wait_status(dev: Dev, correlation_id: str, wanted: set[str], timeout: float = 90) -> Any:
    def judged() -> bool:
        found = flow(dev, correlation_id)
        return found is not None and found["status"] in wanted

    wait_until(judged, timeout=timeout, what=f"flow {correlation_id} to be {wanted}")
    return flow(dev, correlation_id)


def produce(dev: Dev, records: list[tuple[bytes, bytes, list[tuple[str, bytes]]]]) -> None:
    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=dev.bootstrap, acks="all")
        await producer.start()
        try:
            for key, value, headers in records:
                await producer.send_and_wait("orders", value=value, key=key, headers=headers)
        finally:
            await producer.stop()

    asyncio.run(send())


def envelope(event_type: str, correlation_id: str, version: int = 2) -> Envelope:
    return Envelope(
        id=uuid.uuid4().hex,
        source="/services/orders",
        type=event_type,
        dataversion=version,
        time=datetime.now(UTC),
        correlation_id=correlation_id,
    )


def direct(event_type: str, cid: str, data: dict[str, Any], version: int = 2) -> Any:
    headers = encode_headers(envelope(event_type, cid, version))
    return (cid.encode(), json.dumps(data).encode(), headers)


def with_time(record: Any, time: bytes) -> Any:
    key, value, headers = record
    return key, value, [(k, time if k == "ce_time" else v) for k, v in headers]


def db(dev: Dev, name: str) -> sqlite3.Connection:
    return dev.db(name)


def test_every_probe_attack_is_contained(dev: Dev, keys: Keys) -> None:
    observer_pid = dev.pid("saga-observer")

    # A customer's order, placed through the orders service's own intake, completes.
    placed = httpx.post(
        f"{dev.orders_url}/orders",
        json={"customer_id": "victim", "lines": [LINE], "ship_to": SHIP_TO},
        timeout=30,
    )
    assert placed.status_code == 202, placed.text
    victim_id, victim_flow = placed.json()["order_id"], placed.json()["correlation_id"]
    before = wait_status(dev, victim_flow, {"completed"})

    # A start-only partner starts flows, and nothing else.
    acme_order = post_event(
        dev,
        keys.acme.token,
        source="/partners/acme/shop",
        type="order.placed",
        dataversion="2",
        data=order_data(f"acme-{uuid.uuid4().hex[:8]}"),
    )
    assert acme_order.status_code == 202, acme_order.text
    acme_flow = acme_order.json()["events"][0]["correlationid"]
    joining = post_event(
        dev,
        keys.acme.token,
        source="/partners/acme/shop",
        type="order.placed",
        dataversion="2",
        correlationid=victim_flow,
        data=order_data(f"acme-{uuid.uuid4().hex[:8]}"),
    )
    assert joining.status_code == 403, joining.text
    # Dot segments cannot climb out of the partner's source grant.
    for source in ("/partners/acme/../../services/orders", "/partners/acme/%2e%2e/%2e%2e/x"):
        climbing = post_event(
            dev,
            keys.acme.token,
            source=source,
            type="order.placed",
            dataversion="2",
            data=order_data(f"acme-{uuid.uuid4().hex[:8]}"),
        )
        assert climbing.status_code == 403, climbing.text

    # Through the gateway: the customer's order id reused in the rogue key's own flow.
    takeover = post_event(
        dev,
        keys.rogue.token,
        source="/partners/rogue/x",
        type="order.placed",
        dataversion="2",
        data=order_data(victim_id),
    )
    assert takeover.status_code == 202, takeover.text
    takeover_flow = takeover.json()["events"][0]["correlationid"]
    # A cancel that would start a flow is refused; inside the rogue's own flow it passes
    # the gateway, and every service refuses it for naming another flow's order.
    cancel = {"type": "order.cancelled", "source": "/partners/rogue/x"}
    cancel_data = {"order_id": victim_id, "reason": "payment_declined"}
    assert post_event(dev, keys.rogue.token, **cancel, data=cancel_data).status_code == 403
    inside = post_event(
        dev,
        keys.rogue.token,
        **cancel,
        correlationid=takeover.json()["events"][0]["received_id"],
        data=cancel_data,
    )
    assert inside.status_code == 202, inside.text
    # Extreme times and a price beyond 64 bits never pass the gateway.
    for time in ("9999-12-31T23:59:59Z", "1969-12-31T23:59:59Z", "0001-01-01T00:00:00-23:59"):
        extreme = post_event(
            dev,
            keys.rogue.token,
            source="/partners/rogue/x",
            type="order.placed",
            dataversion="2",
            time=time,
            data=order_data("o-time"),
        )
        assert extreme.status_code == 400, extreme.text
    huge = post_event(
        dev,
        keys.rogue.token,
        source="/partners/rogue/x",
        type="order.placed",
        dataversion="2",
        data=order_data("o-huge", unit_price_cents=2**70),
    )
    assert huge.status_code == 422, huge.text

    # Straight to Kafka: the same attacks, and the times the gateway refused.
    produce(
        dev,
        [
            direct("order.placed", "kafka-takeover", order_data(victim_id)),
            direct("order.cancelled", "kafka-cancel", cancel_data, version=1),
            with_time(
                direct("order.placed", "kafka-future", order_data("o-future")),
                b"9999-12-31T23:59:59+00:00",
            ),
            with_time(
                direct("order.placed", "kafka-past", order_data("o-past")),
                b"0001-01-01T00:00:00-23:59",
            ),
            direct("order.placed", "kafka-price", order_data("o-price", unit_price_cents=2**70)),
        ],
    )

    # The attack flows end: a reused order id is refused by every service, inventory's
    # refusal fails the flow (stock.rejected), and orders cancels it, in its own flow.
    for attack in (takeover_flow, "kafka-takeover"):
        ended = wait_status(dev, attack, {"failed"})
        conflicts = [
            d for d in ended["dead_letter_records"] if d["error_type"] == "KeyConflictError"
        ]
        assert {d["group"] for d in conflicts} >= {"orders", "inventory", "shipping"}, conflicts
        assert [e for e in ended["events"] if e["type"] == "stock.reserved"] == []
    # Flows whose every event was refused, nothing coming of it, end rejected: at once for a
    # price no consumer can read (an invalid payload), at the deadline for a foreign cancel
    # (refused for key conflicts, with no start). Each is announced, its refusals shown.
    price = wait_status(dev, "kafka-price", {"rejected"}, timeout=30)
    assert price["ended_at"] is not None, price
    assert {d["error_type"] for d in price["dead_letter_records"]} == {"InvalidPayloadError"}
    cancel = wait_status(dev, "kafka-cancel", {"rejected"})
    cancel_groups = {
        d["group"] for d in cancel["dead_letter_records"] if d["error_type"] == "KeyConflictError"
    }
    assert cancel_groups >= {"inventory", "payments"}
    for rejected in ("kafka-price", "kafka-cancel"):
        # Published on Kafka, and read back by the observer from the sagas topic.
        def published(cid: str = rejected) -> bool:
            return announced(dev, cid) == [("saga.rejected", True)]

        wait_until(
            published,
            timeout=30,
            what=f"saga.rejected for {rejected} on the sagas topic",
        )
    wait_status(dev, acme_flow, {"completed"})

    # Nothing was applied to the customer's order, its stock or its payment.
    after = flow(dev, victim_flow)
    assert after is not None
    assert after["status"] == "completed"
    assert [e["id"] for e in after["events"]] == [e["id"] for e in before["events"]]
    assert after["dead_letter_records"] == []
    with db(dev, "orders") as conn:
        assert rows(
            conn, "SELECT status, correlation_id FROM orders WHERE order_id = ?", victim_id
        ) == [("confirmed", victim_flow)]
    with db(dev, "inventory") as conn:
        assert rows(
            conn, "SELECT status FROM inventory_reservations WHERE order_id = ?", victim_id
        ) == [("reserved",)]
        assert (
            rows(conn, "SELECT order_id FROM inventory_reservations WHERE order_id = 'o-price'")
            == []
        )
    with db(dev, "payments") as conn:
        assert rows(conn, "SELECT status FROM payments WHERE order_id = ?", victim_id) == [
            ("authorized",)
        ]

    # The observer never went down, answers 200, and shows the undecodable records.
    assert dev.pid("saga-observer") == observer_pid
    assert dev.restarts("saga-observer") == 0
    base = observer(dev)
    rejects = httpx.get(f"{base}/api/rejects", params={"limit": 100}, timeout=10).json()
    time_rejects = [r for r in rejects["items"] if "ce_time" in r["error_message"]]
    assert len(time_rejects) == 2, rejects
    assert {r["error_type"] for r in time_rejects} == {"InvalidEnvelopeError"}
    for path in ("/healthz", "/api/flows", "/api/counts", "/api/dead-letters", "/api/stats"):
        assert httpx.get(f"{base}{path}", timeout=10).status_code == 200, path
    # Every flow ended: none running, stalled or waiting for a compensation.
    listed = httpx.get(f"{base}/api/flows", params={"limit": 100}, timeout=10).json()
    assert {item["status"] for item in listed["items"]} <= ENDED, listed["items"]
    assert listed["total"] == len(listed["items"])
