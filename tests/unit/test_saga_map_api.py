"""The saga map, failure patterns and stuck-flow search over HTTP: answers, links, problems."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from choreokit.services.runtime.access import AccessPolicy, Role, TokenStore, hash_token, mint_token
from choreokit.services.saga_observer.api import build_api
from choreokit.services.saga_observer.audit import AuditLog
from choreokit.services.saga_observer.metrics import ObserverMetrics
from choreokit.services.saga_observer.records import micros
from tests.order_flows import Flow, Outcome, as_records, mix, steps_of
from tests.unit.test_saga_api import FakeInstance
from tests.unit.test_saga_map import CATALOG, START, WITHIN, opened
from tests.unit.test_saga_store import Fed

FLOWS = mix(18, outcomes=list(Outcome), seed=8, start=START)
CLOCK = START + timedelta(seconds=40)
"""Past the 30 s deadline of stock.reserved, before the saga's timeout."""


def app_for(store: Any, queries: Any, maps: Any, access: AccessPolicy) -> Any:
    return build_api(
        queries=queries,
        catalog=CATALOG,
        metrics=ObserverMetrics(CollectorRegistry()),
        instance=FakeInstance(),
        max_page_size=50,
        access=access,
        audit=AuditLog(store._engine, queries._engine, lambda: 0),
        maps=maps,
        clock=lambda: micros(CLOCK),
    )


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with opened(tmp_path / "db.sqlite3") as (store, queries, maps):
        await Fed(store).feed(as_records(steps_of(FLOWS)), batch=20, now=WITHIN)
        app = app_for(store, queries, maps, AccessPolicy(allowed_hosts=("observer",)))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://observer") as http:
            yield http


def stopped(flows: list[Flow]) -> set[str]:
    return {f.correlation_id for f in flows if f.outcome is Outcome.STOPS_AT_PAYMENT}


async def test_the_map_links_each_figure_to_its_flows(client: httpx.AsyncClient) -> None:
    answer = (await client.get("/api/sagas/order/map")).json()
    assert answer["flows"] == len(FLOWS)
    edges = {(e["source"], e["target"]): e for e in answer["edges"]}
    edge = edges[("stock.reserved", "payment.authorized")]
    listed = (await client.get(edge["flows_url"] + "&limit=50")).json()
    assert listed["total"] == edge["count"] > 0
    assert {i["correlation_id"] for i in listed["items"]} == {
        f.correlation_id
        for f in FLOWS
        if any(type(s.event).event_info().type == "payment.authorized" for s in f.steps)
    }
    node = next(n for n in answer["nodes"] if n["id"] == "stock.reserved")
    assert node["deadline_seconds"] == 30
    # by the clock, they wait past the 30 s deadline (the sweep has not announced it yet)
    waits = len(stopped(FLOWS))
    assert node["waiting"] == {"running": waits, "stalled": 0, "overdue": waits}
    waiting = (await client.get(node["waiting_url"])).json()
    assert {i["correlation_id"] for i in waiting["items"]} == stopped(FLOWS)
    spec = (await client.get("/api/sagas")).json()[0]
    assert spec["deadlines_seconds"] == {"stock.reserved": 30}


async def test_flows_waiting_longer_than_a_duration_are_found(client: httpx.AsyncClient) -> None:
    # the clock says 40 s after the start: each stopped flow waits for about 40 s
    for waited, expected in (("30s", stopped(FLOWS)), ("1m", set()), ("39500ms", stopped(FLOWS))):
        found = (
            await client.get(
                "/api/flows", params={"waiting_at": "stock.reserved", "waited_more_than": waited}
            )
        ).json()
        assert {i["correlation_id"] for i in found["items"]} == expected, waited


async def test_failure_patterns_are_served(client: httpx.AsyncClient) -> None:
    answer = (await client.get("/api/sagas/order/failure-patterns")).json()
    assert answer["statuses"] == ["stalled", "failed", "failed-uncompensated", "compensated"]
    counts = {(p["last_step"], p["fingerprint"]): p["count"] for p in answer["patterns"]}
    # nothing stalled yet (within the timeout); failed and compensated flows by their last step
    assert (
        sum(counts.values())
        == answer["total"]
        == sum(
            f.outcome in (Outcome.OUT_OF_STOCK, Outcome.PAYMENT_DECLINED, Outcome.CARRIER_FAILURE)
            for f in FLOWS
        )
    )
    first = answer["patterns"][0]
    listed = (await client.get(first["flows_url"])).json()
    assert listed["total"] == first["count"]


@pytest.mark.parametrize(
    ("path", "params", "status", "says"),
    [
        ("/api/sagas/refund/map", {}, 404, "no saga named 'refund'; the sagas are: order"),
        ("/api/sagas/refund/failure-patterns", {}, 404, "no saga named 'refund'"),
        ("/api/sagas/order/map", {"since": "yesterday"}, 422, "since"),
        (
            "/api/sagas/order/map",
            {"since": "2026-11-30T12:00:00Z", "until": "2026-11-30T11:00:00Z"},
            400,
            "'until' must be later",
        ),
        ("/api/sagas/order/failure-patterns", {"limit": 201}, 422, "limit"),
        ("/api/sagas/order/failure-patterns", {"status": "completed"}, 422, "not completed"),
        ("/api/sagas/order/failure-patterns", {"status": "lost"}, 422, "status"),
        ("/api/flows", {"waited_more_than": "a while"}, 422, "waited_more_than"),
        ("/api/flows", {"waited_more_than": "9" * 40}, 422, "waited_more_than"),
        ("/api/flows", {"waited_more_than": "9000h"}, 422, "at most 365 days"),
        ("/api/flows", {"waiting_at": "x" * 257}, 422, "waiting_at"),
        ("/api/flows", {"dead_letter_error": "x" * 257}, 422, "dead_letter_error"),
        ("/api/flows", {"dead_letter_fingerprint": "x" * 33}, 422, "dead_letter_fingerprint"),
        ("/api/flows", {"cause_type": "stock.reserved"}, 400, "cause_type needs event_type"),
    ],
)
async def test_bad_input_gets_a_problem_answer(
    client: httpx.AsyncClient, path: str, params: dict[str, Any], status: int, says: str
) -> None:
    response = await client.get(path, params=params)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert says in response.json()["detail"]


async def test_the_map_needs_a_viewer_token_when_the_observer_uses_tokens(tmp_path: Path) -> None:
    token = mint_token()
    access = AccessPolicy(
        tokens=TokenStore([("vera", Role.VIEWER, hash_token(token))]), read_requires_auth=True
    )
    async with opened(tmp_path / "db.sqlite3") as (store, queries, maps):
        transport = httpx.ASGITransport(app=app_for(store, queries, maps, access))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            for path in ("/api/sagas/order/map", "/api/sagas/order/failure-patterns"):
                assert (await http.get(path)).status_code == 401
                ok = await http.get(path, headers={"Authorization": f"Bearer {token}"})
                assert ok.status_code == 200
