"""The canary: a customer's e-mail address and a card-like number, put into payloads (a field
marked sensitive) and into record keys (correlation ids), run through the example system
(`choreo dev`, tracing on, spans to a test OTLP receiver), appear in no exported span
(attributes, events, links, status), no log line of any process, no gateway error body,
and no payload the observer's API shows."""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from choreokit.events import REDACTED
from choreokit.services.gateway import mint_key
from choreokit.services.gateway._keys import entry_document
from tests.e2e.system import Dev, running_dev
from tests.integration.otlp import Receiver, otlp_receiver
from tests.support import wait_until

pytestmark = pytest.mark.slow

FINAL = {"completed", "failed", "compensated", "failed-uncompensated", "stalled", "rejected"}
LINE = {"sku": "SKU-1", "quantity": 1, "unit_price_cents": 1000}
SHIP_TO = {"country": "DE", "postal_code": "10115"}


@dataclass
class Canary:
    """What must not leak, and where it was left."""

    email: str
    card: str
    dev: Dev
    receiver: Receiver
    token: str
    logs: Path
    flows: dict[str, dict[str, Any]]
    payloads: list[Any]
    error_bodies: list[str]

    @property
    def values(self) -> tuple[str, str]:
        return self.email, self.card


def _url(dev: Dev, service: str) -> str:
    return f"http://127.0.0.1:{dev.env[f'CHOREO_{service}_PORT']}"


def _post(dev: Dev, token: str, **attributes: Any) -> httpx.Response:
    event = {
        "specversion": "1.0",
        "id": uuid.uuid4().hex,
        "source": "/partners/canary/shop",
        "type": "order.placed",
        "dataversion": "2",
        **attributes,
    }
    return httpx.post(
        f"{_url(dev, 'GATEWAY')}/events",
        content=json.dumps(event),
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/cloudevents+json",
        },
        timeout=30,
    )


def _order(email: str) -> dict[str, Any]:
    return {
        "order_id": f"canary-{uuid.uuid4().hex[:12]}",
        "customer_id": "c-canary",
        "lines": [LINE],
        "ship_to": SHIP_TO,
        "email": email,
    }


@pytest.fixture(scope="module")
def canary(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Canary]:
    tmp = tmp_path_factory.mktemp("canary")
    rng = random.Random()  # a fresh value each run: nothing cached or committed can match
    email = f"canary.{uuid.uuid4().hex[:10]}@leak.example"
    card = "4" + "".join(rng.choice("0123456789") for _ in range(15))
    key = mint_key("canary", types=("*",), sources=("/partners/canary/*",), trusted=True)
    env = {
        "CHOREO_GATEWAY_KEYS": json.dumps({"keys": [entry_document(key.entry)]}),
        "CHOREO_SHIPPING_CARRIER_FAILURE_RATE": "0",
        "CHOREO_OBSERVER_TIMEOUT": "20s",
        "CHOREO_LOG_FORMAT": "json",
        "OTEL_TRACES_SAMPLER": "parentbased_always_on",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    with otlp_receiver(tmp) as receiver:
        env |= {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.grpc_endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        }
        flows: dict[str, dict[str, Any]] = {}
        payloads: list[Any] = []
        errors: list[str] = []
        with running_dev(tmp / "dev", env) as dev:
            # Two orders whose flows are keyed by the canaries, both carrying the e-mail.
            for correlation_id in (email, card):
                answer = _post(dev, key.token, correlationid=correlation_id, data=_order(email))
                assert answer.status_code == 202, answer.text
            # Invalid events carrying them: the answers must not repeat them.
            too_long = _order(email + "x" * 300)
            too_long["lines"] = [LINE | {"quantity": card}]
            too_long["ship_to"] = {"country": "DE", "postal_code": card + card}
            for bad in (
                too_long,
                {"order_id": card, "email": [email], "lines": card, "ship_to": email},
            ):
                answer = _post(dev, key.token, correlationid=card, data=bad)
                assert 400 <= answer.status_code < 500, answer.text
                errors.append(answer.text)

            observer = _url(dev, "OBSERVER")

            def judged(correlation_id: str) -> bool:
                got = httpx.get(f"{observer}/api/flows/{correlation_id}", timeout=10)
                if got.status_code != 200 or got.json()["status"] not in FINAL:
                    return False
                flows[correlation_id] = got.json()
                return True

            for correlation_id in (email, card):
                wait_until(
                    lambda c=correlation_id: judged(c),  # type: ignore[misc]
                    timeout=120,
                    what=f"the observer to judge flow {correlation_id!r}",
                )
            for found in flows.values():
                for event in found["events"]:
                    got = httpx.get(f"{observer}/api/events/{event['id']}", timeout=10)
                    assert got.status_code == 200, got.text
                    payloads.append(got.json())
            # Every service has handled and exported by now; the spans still queued are
            # flushed when `choreo dev` stops them.
        yield Canary(email, card, dev, receiver, key.token, tmp / "dev", flows, payloads, errors)


def _leaks(text: str, values: tuple[str, ...]) -> list[str]:
    return [v for v in values if v in text]


def test_no_exported_span_carries_a_canary(canary: Canary) -> None:
    spans = canary.receiver.spans()
    services = {s["service_name"] for s in spans}
    assert {"orders", "inventory", "payments", "shipping"} <= services, services
    leaking = [
        (s["service_name"], s["name"], found)
        for s in spans
        if (
            found := _leaks(
                json.dumps([s["attributes"], s["events"], s["links"], s["status"], s["name"]]),
                canary.values,
            )
        )
    ]
    assert not leaking, leaking
    # The flows are still findable: by their labels.
    from choreokit.tracing import flow_label

    conversations = {s["attributes"].get("messaging.message.conversation_id") for s in spans}
    assert {flow_label(canary.email), flow_label(canary.card)} <= conversations


def test_no_log_line_of_any_process_carries_a_canary(canary: Canary) -> None:
    files = [canary.logs / "dev.log", *sorted((canary.logs / "logs").glob("*.log"))]
    files.append(canary.logs.parent / "dev-dev.log")
    read = {f.name: f.read_text(errors="replace") for f in files if f.exists()}
    assert {"orders.log", "inventory.log", "payments.log", "shipping.log"} <= set(read), read.keys()
    assert sum(len(t) for t in read.values()) > 0
    leaking = {
        name: [line for line in text.splitlines() if _leaks(line, canary.values)][:3]
        for name, text in read.items()
        if _leaks(text, canary.values)
    }
    assert not leaking, leaking


def test_no_gateway_error_body_repeats_a_canary(canary: Canary) -> None:
    assert len(canary.error_bodies) == 2
    for body in canary.error_bodies:
        assert "problem" in body or "errors" in body or "detail" in body, body
        assert not _leaks(body, canary.values), body


def test_the_observer_shows_sensitive_fields_redacted(canary: Canary) -> None:
    placed = [p for p in canary.payloads if p["type"] == "order.placed"]
    assert len(placed) == 2, [p["type"] for p in canary.payloads]
    for event in placed:
        assert event["payload"]["email"] == REDACTED
        assert event["payload"]["ship_to"]["postal_code"] == REDACTED
        assert event["payload"]["lines"][0]["sku"] == "SKU-1"  # the rest is kept
    for event in canary.payloads:
        assert canary.email not in json.dumps(event["payload"]), event
    # A flow keyed by the card number shows the e-mail nowhere.
    assert canary.email not in json.dumps(canary.flows[canary.card])
