"""The observer's API over a real SQLite projection: filters, one flow, topology, problems."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from choreokit.services.runtime.access import AccessPolicy
from choreokit.services.saga_observer.api import build_api
from choreokit.services.saga_observer.audit import AuditLog
from choreokit.services.saga_observer.metrics import ObserverMetrics
from choreokit.services.saga_observer.queries import Queries
from tests.order_flows import Flow, Outcome, as_records, mix, steps_of
from tests.unit.test_saga_store import CATALOG, NOW, Fed, opened

JAEGER = "http://jaeger.internal:16686"


@dataclass
class FakeInstance:
    client_id: str = "observer-1"
    group: str = "saga-observer"
    state: str = "running"

    def consumer_state(self) -> str:
        return self.state

    def assignment(self) -> list[str]:
        return ["orders[0]"]

    def lag(self) -> int:
        return 0


@dataclass
class Api:
    client: httpx.AsyncClient
    flows: list[Flow]
    instance: FakeInstance


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    flows = mix(12, outcomes=list(Outcome), start=NOW)
    async with opened(tmp_path / "db.sqlite3") as (store, queries):
        await Fed(store).feed(as_records(steps_of(flows)), batch=20)
        reader = Queries(queries._engine, CATALOG, group="saga-observer", jaeger_url=JAEGER + "/")
        instance = FakeInstance()
        app = build_api(
            queries=reader,
            catalog=CATALOG,
            metrics=ObserverMetrics(CollectorRegistry()),
            instance=instance,
            max_page_size=50,
            access=AccessPolicy(allowed_hosts=("observer",)),
            audit=AuditLog(store._engine, queries._engine, lambda: 0),
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://observer") as client:
            yield Api(client, flows, instance)


def of(api: Api, outcome: Outcome) -> Flow:
    return next(f for f in api.flows if f.outcome is outcome)


async def test_flows_are_listed_newest_first_and_paginated(api: Api) -> None:
    page = (await api.client.get("/api/flows", params={"limit": 5})).json()
    assert page["total"] == 12
    assert len(page["items"]) == 5
    starts = [item["started_at"] for item in page["items"]]
    assert starts == sorted(starts, reverse=True)
    rest = (await api.client.get("/api/flows", params={"limit": 20, "offset": 5})).json()
    ids = {i["correlation_id"] for i in page["items"]} | {
        i["correlation_id"] for i in rest["items"]
    }
    assert ids == {f.correlation_id for f in api.flows}


@pytest.mark.parametrize(
    ("params", "matches"),
    [
        (
            {"status": "compensated"},
            lambda f: f.outcome in (Outcome.PAYMENT_DECLINED, Outcome.CARRIER_FAILURE),
        ),
        (
            {"status": ["completed", "failed"]},
            lambda f: f.outcome in (Outcome.HAPPY, Outcome.OUT_OF_STOCK),
        ),
        ({"event_type": "payment.refunded"}, lambda f: f.outcome is Outcome.CARRIER_FAILURE),
        ({"service": "shipping"}, lambda f: f.outcome in (Outcome.HAPPY, Outcome.CARRIER_FAILURE)),
        ({"saga": "order"}, lambda f: True),
        ({"saga": "refund"}, lambda f: False),
        ({"connected": "true"}, lambda f: True),
        ({"dead_letters": "true"}, lambda f: False),
    ],
)
async def test_flows_are_filtered(
    api: Api, params: dict[str, Any], matches: Callable[[Flow], bool]
) -> None:
    page = (await api.client.get("/api/flows", params={**params, "limit": 20})).json()
    expected = {f.correlation_id for f in api.flows if matches(f)}
    assert {i["correlation_id"] for i in page["items"]} == expected
    assert page["total"] == len(expected)


async def test_flows_are_found_by_correlation_id_prefix_or_event_id(api: Api) -> None:
    flow = of(api, Outcome.CARRIER_FAILURE)
    by_prefix = (await api.client.get("/api/flows", params={"q": flow.correlation_id[:13]})).json()
    assert [i["correlation_id"] for i in by_prefix["items"]] == [flow.correlation_id]
    by_event = (await api.client.get("/api/flows", params={"q": flow.steps[3].event_id})).json()
    assert [i["correlation_id"] for i in by_event["items"]] == [flow.correlation_id]
    exact = (
        await api.client.get("/api/flows", params={"correlation_id": flow.correlation_id})
    ).json()
    assert exact["total"] == 1
    wild = (await api.client.get("/api/flows", params={"q": "%"})).json()
    assert wild["total"] == 0


async def test_flows_are_filtered_by_start_time(api: Api) -> None:
    first = min(f.steps[0].time for f in api.flows)
    since = (first + timedelta(milliseconds=5, microseconds=1)).isoformat()
    later = (await api.client.get("/api/flows", params={"since": since, "limit": 20})).json()
    assert later["total"] == sum(
        f.steps[0].time >= datetime.fromisoformat(since) for f in api.flows
    )
    assert 0 < later["total"] < 12
    naive = (first.astimezone(UTC).replace(tzinfo=None) - timedelta(seconds=1)).isoformat()
    everything = (await api.client.get("/api/flows", params={"since": naive})).json()
    assert everything["total"] == 12


async def test_one_flow_has_its_graph_timings_and_jaeger_links(api: Api) -> None:
    flow = of(api, Outcome.CARRIER_FAILURE)
    detail = (await api.client.get(f"/api/flows/{flow.correlation_id}")).json()
    assert detail["status"] == "compensated"
    assert [e["id"] for e in detail["events"]] == [s.event_id for s in flow.steps]
    edges = {(e["cause"], e["effect"]) for e in detail["graph"]["edges"]}
    assert edges == {(s.causation_id, s.event_id) for s in flow.steps if s.causation_id}
    assert detail["graph"]["connected"] is True
    assert detail["graph"]["root_type"] == "order.placed"
    assert {t["service"] for t in detail["timings"]} == {
        "orders",
        "inventory",
        "payments",
        "shipping",
    }
    assert detail["jaeger_search_url"].startswith(JAEGER + "/search?service=orders&tags=")
    assert detail["traces"] == []  # the synthetic events carry no traceparent
    assert detail["spec"]["name"] == "order"
    assert detail["lifecycle"][0]["type"] == "saga.compensated"
    event = (await api.client.get(f"/api/events/{flow.steps[-1].event_id}")).json()
    assert event["payload"]["payment_id"] == "p-3"
    assert event["cause_type"] == "order.cancelled"
    assert event["latency_ms"] > 0


async def test_running_flows_say_what_they_expect_and_from_whom(api: Api) -> None:
    flow = of(api, Outcome.STOPS_AT_PAYMENT)
    detail = (await api.client.get(f"/api/flows/{flow.correlation_id}")).json()
    assert detail["status"] == "running"
    (step,) = detail["expected"]
    assert step["one_of"] == ["payment.authorized", "payment.declined", "approval.requested"]
    assert step["services"] == ["payments"]  # inferred: who was seen publishing those types


async def test_counts_list_every_status(api: Api) -> None:
    counts = (await api.client.get("/api/counts")).json()
    assert counts["total"] == 12
    assert counts["by_status"] == {
        "running": 4,
        "completed": 2,
        "failed": 2,
        "compensated": 4,
        "failed-uncompensated": 0,
        "stalled": 0,
        "rejected": 0,
        "untracked": 0,
    }


async def test_the_topology_is_inferred_from_causation(api: Api) -> None:
    topo = (await api.client.get("/api/topology")).json()
    assert topo["services"] == ["inventory", "orders", "payments", "shipping"]
    reactions = {(r["event_type"], r["service"]): r for r in topo["reactions"]}
    assert reactions[("order.placed", "inventory")]["produces"] == [
        "stock.rejected",
        "stock.reserved",
    ]
    assert reactions[("order.placed", "inventory")]["count"] == 12
    assert set(reactions[("order.cancelled", "inventory")]["produces"]) == {"stock.released"}
    latency = reactions[("stock.reserved", "payments")]["latency_ms"]
    assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"]
    publishers = {(p["service"], p["event_type"]): p["count"] for p in topo["publishers"]}
    assert publishers[("orders", "order.placed")] == 12


@pytest.mark.parametrize(
    ("path", "params", "status", "says"),
    [
        ("/api/flows", {"limit": 51}, 422, "at most 50 items per page"),
        ("/api/flows", {"limit": 0}, 422, "limit"),
        ("/api/flows", {"status": "finished"}, 422, "status"),
        ("/api/flows", {"since": "yesterday"}, 422, "since"),
        ("/api/flows", {"connected": "maybe"}, 422, "connected"),
        ("/api/flows", {"sort": "random"}, 422, "sort"),
        ("/api/flows", {"q": "x" * 2000}, 422, "q"),
        (
            "/api/flows",
            {"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"},
            400,
            "'until' must be later",
        ),
        ("/api/flows/no-such-flow", {}, 404, "no flow with correlation id 'no-such-flow'"),
        ("/api/events/no-such-event", {}, 404, "no event with id"),
        ("/api/nothing-here", {}, 404, "/api/docs"),
        ("/api/rejects", {"offset": -1}, 422, "offset"),
    ],
)
async def test_bad_input_gets_a_problem_answer(
    api: Api, path: str, params: dict[str, Any], status: int, says: str
) -> None:
    response = await api.client.get(path, params=params)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status
    assert says in body["detail"]


async def test_writes_are_not_allowed(api: Api) -> None:
    response = await api.client.post("/api/flows", json={})
    assert response.status_code == 405
    assert response.headers["content-type"] == "application/problem+json"


async def test_health_metrics_openapi_and_the_ui_are_served(api: Api) -> None:
    health = await api.client.get("/healthz")
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "database": "ok", "consumer": "running"}
    api.instance.state = "starting"
    assert (await api.client.get("/healthz")).status_code == 503
    metrics = (await api.client.get("/metrics")).text
    assert 'choreo_observer_flows{status="compensated"} 4.0' in metrics
    spec = (await api.client.get("/api/openapi.json")).json()
    assert {"/api/flows", "/api/counts", "/api/topology", "/healthz", "/metrics"} <= set(
        spec["paths"]
    )
    assert "422" in spec["paths"]["/api/flows"]["get"]["responses"]
    page = await api.client.get("/")
    assert page.status_code == 200
    assert "saga observer" in page.text
    script = await api.client.get("/ui/app.js")
    assert script.status_code == 200
    assert "swimlanes" in script.text
    stats = (await api.client.get("/api/stats")).json()
    assert stats["events"] == sum(len(f.steps) for f in api.flows)
    assert stats["instance"]["assigned"] == ["orders[0]"]
    sagas = (await api.client.get("/api/sagas")).json()
    assert sagas[0]["compensations"] == {
        "stock.reserved": "stock.released",
        "payment.authorized": "payment.refunded",
    }


async def test_the_api_docs_come_from_local_files_only(api: Api) -> None:
    import re

    page = await api.client.get("/api/docs")
    assert page.status_code == 200
    assert not re.findall(r"(?:src|href)=\"(?:https?:)?//", page.text), "no CDN"
    for asset in re.findall(r"(?:src|href)=\"(/[^\"]+)\"", page.text):
        answer = await api.client.get(asset)
        assert answer.status_code == 200, asset
        assert answer.content, asset
    assert "<script>" not in page.text  # no inline script: the CSP allows none
    assert "script-src 'self'" in page.headers["content-security-policy"]


async def test_the_audit_log_needs_an_operator(api: Api) -> None:
    refused = await api.client.get("/api/audit")
    assert refused.status_code == 401
    assert refused.headers["content-type"] == "application/problem+json"


async def test_reads_need_a_viewer_token_when_the_observer_uses_tokens(tmp_path: Path) -> None:
    from choreokit.services.runtime.access import Role, TokenStore, hash_token, mint_token

    token = mint_token()
    async with opened(tmp_path / "db.sqlite3") as (store, queries):
        app = build_api(
            queries=Queries(queries._engine, CATALOG, group="saga-observer", jaeger_url=JAEGER),
            catalog=CATALOG,
            metrics=ObserverMetrics(CollectorRegistry()),
            instance=FakeInstance(),
            max_page_size=50,
            access=AccessPolicy(
                tokens=TokenStore([("vera", Role.VIEWER, hash_token(token))]),
                read_requires_auth=True,
            ),
            audit=AuditLog(store._engine, queries._engine, lambda: 0),
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            assert (await client.get("/api/flows")).status_code == 401
            assert (await client.get("/api/events/x")).status_code == 401
            ok = await client.get("/api/flows", headers={"Authorization": f"Bearer {token}"})
            assert ok.status_code == 200
            assert (await client.get("/healthz")).status_code == 200
            assert (await client.get("/")).status_code == 200
            assert (await client.get("/api/openapi.json")).status_code == 200
        async with httpx.AsyncClient(transport=transport, base_url="http://evil.test") as client:
            foreign = await client.get("/api/flows", headers={"Authorization": f"Bearer {token}"})
            assert foreign.status_code == 400
