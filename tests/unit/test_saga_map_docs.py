"""docs/saga-observer.md's saga map, stuck-flow and step-deadline examples, run: the map's
answer has the documented shape and links, every stuck-flow query is answered, and the
reacting handler handles a ``saga.step_overdue``."""

from __future__ import annotations

import json
import logging
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from choreokit.services.saga_observer.events import SagaStepOverdue
from choreokit.testing import ServiceKit
from tests.unit.test_saga_map import START
from tests.unit.test_saga_map_api import client

__all__ = ["client"]  # the fixture, used by name

PAGE = Path(__file__).resolve().parents[2] / "docs" / "saga-observer.md"
EXAMPLE = re.compile(
    r"<!-- example: (?P<name>[\w-]+) -->\n```(?P<lang>\w+)\n(?P<code>.*?)\n```", re.S
)


def examples() -> dict[str, str]:
    return {m["name"]: m["code"] for m in EXAMPLE.finditer(PAGE.read_text())}


def test_the_page_has_its_examples() -> None:
    assert set(examples()) == {"map-answer", "stuck-flows", "step-overdue-handler"}


async def test_the_documented_map_answer_has_the_real_shape_and_links(
    client: httpx.AsyncClient,
) -> None:
    documented = json.loads(examples()["map-answer"])
    real = (await client.get("/api/sagas/order/map")).json()
    assert set(documented) <= set(real)
    nodes = {n["id"]: n for n in real["nodes"]}
    for node in documented["nodes"]:
        shown = nodes[node["id"]]
        assert set(node) == set(shown)
        assert set(node["waiting"]) == set(shown["waiting"])
        for key in ("kind", "depth", "deadline_seconds", "flows_url", "waiting_url"):
            assert node[key] == shown[key], key
    edges = {(e["source"], e["target"]): e for e in real["edges"]}
    for edge in documented["edges"]:
        shown = edges[(edge["source"], edge["target"])]
        assert set(edge) == set(shown)
        assert set(edge["latency_ms"]) == set(shown["latency_ms"])
        assert (edge["kind"], edge["flows_url"]) == (shown["kind"], shown["flows_url"])


async def test_every_stuck_flow_query_is_answered(client: httpx.AsyncClient) -> None:
    lines = examples()["stuck-flows"].splitlines()
    assert lines
    for line in lines:
        method, path = line.split(" ", 1)
        assert method == "GET"
        response = await client.get(path)
        assert response.status_code == 200, (path, response.text)
        body = response.json()
        assert "items" in body or "patterns" in body, path


async def test_the_reacting_handler_handles_an_overdue_step(
    caplog: pytest.LogCaptureFixture,
) -> None:
    scope: dict[str, Any] = {}
    exec(examples()["step-overdue-handler"], scope)
    overdue = SagaStepOverdue(
        saga="order",
        step="stock.reserved",
        waiting_event_id="e-1",
        waiting_event_type="stock.reserved",
        waiting_since=START,
        deadline=START + timedelta(seconds=30),
        expected=("payment.authorized", "payment.declined"),
    )
    with caplog.at_level(logging.WARNING, logger="escalations"):
        async with ServiceKit(scope["escalations"]) as kit:
            await kit.deliver(overdue, correlation_id="flow-1")
    (message,) = [r.getMessage() for r in caplog.records if r.name == "escalations"]
    assert message.startswith("order flow flow-1: no payment.authorized or payment.declined")
