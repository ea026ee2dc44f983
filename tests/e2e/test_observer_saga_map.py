"""The live saga map in a real browser (Chromium, headless) after `choreo demo`: the counts on
the stock.reserved -> payment.authorized edge equal the API's and the demo's own tally, and a
click on the edge lists exactly those flows."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect, sync_playwright

from tests.e2e.system import run_demo, running_dev
from tests.observer_fixtures import ARTIFACTS
from tests.support import wait_until

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ORDERS = 40
EDGE = ("stock.reserved", "payment.authorized")
TIMES = "\u00d7"
"""The multiplication sign before an edge's count."""


def get(url: str, path: str, **params: Any) -> Any:
    response = httpx.get(url + path, params=params, timeout=10)
    response.raise_for_status()
    return response.json()


def test_the_saga_map_shows_the_demo_and_lists_an_edges_flows(tmp_path: Path) -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is missing: scripts/test installs Debian's 'chromium' package")
    with running_dev(tmp_path / "dev") as dev:
        url = f"http://127.0.0.1:{dev.env['CHOREO_OBSERVER_PORT']}"
        summary = run_demo(
            "--orders",
            str(ORDERS),
            "--seed",
            "3",
            "--bootstrap",
            dev.bootstrap,
            "--orders-url",
            dev.orders_url,
        )
        assert summary["exit_code"] == 0, summary["stderr"]
        tally = summary["transitions"][" -> ".join(EDGE)]
        assert 0 < tally < ORDERS  # the seed injects declines and stock-outs too

        def judged() -> bool:
            counts = get(url, "/api/counts", saga="order")
            return bool(counts["total"] == ORDERS and counts["by_status"]["running"] == 0)

        wait_until(judged, timeout=120, what=f"the observer to judge all {ORDERS} flows")
        answer = get(url, "/api/sagas/order/map")
        edge = next(e for e in answer["edges"] if (e["source"], e["target"]) == EDGE)
        assert edge["count"] == tally
        assert edge["latency_ms"]["samples"] == tally
        assert edge["latency_ms"]["p50"] <= edge["latency_ms"]["p95"]
        placed = next(n for n in answer["nodes"] if n["id"] == "order.placed")
        assert placed["passed"] == answer["flows"] == ORDERS
        assert sum(n["waiting"]["running"] + n["waiting"]["stalled"] for n in answer["nodes"]) == 0
        listed = get(url, "/api/flows", saga="order", cause_type=EDGE[0], event_type=EDGE[1])
        expected_ids = {item["correlation_id"] for item in listed["items"]}
        assert len(expected_ids) == listed["total"] == tally

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
            try:
                page = browser.new_page(viewport={"width": 1700, "height": 1000})
                errors: list[str] = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                page.goto(url + "/#/map")
                drawn = page.locator(
                    f'[data-testid="map-edge"][data-source="{EDGE[0]}"][data-target="{EDGE[1]}"]'
                )
                expect(drawn).to_have_attribute("data-count", str(tally))
                count = drawn.get_by_test_id("map-edge-count")
                expect(count).to_have_text(f"{TIMES}{tally}")
                for node in answer["nodes"]:
                    shown = page.locator(f'[data-testid="map-node"][data-type="{node["id"]}"]')
                    expect(shown).to_have_attribute("data-passed", str(node["passed"]))
                reserved = page.locator('[data-testid="map-node"][data-type="stock.reserved"]')
                expect(reserved).to_contain_text("deadline 30 s")
                expect(page.get_by_test_id("failure-pattern").first).to_be_visible()
                ARTIFACTS.mkdir(exist_ok=True)
                page.screenshot(path=str(ARTIFACTS / "observer-saga-map.png"), full_page=True)

                drawn.locator(".hit").click(force=True)
                expect(page.get_by_test_id("linked-cause_type")).to_contain_text(EDGE[0])
                rows = page.get_by_test_id("flow-row")
                expect(rows).to_have_count(tally)
                shown_ids = rows.get_by_test_id("flow-link").evaluate_all(
                    "links => links.map(a => a.title)"
                )
                assert set(shown_ids) == expected_ids
                page.screenshot(path=str(ARTIFACTS / "observer-saga-map-edge-flows.png"))
                assert errors == []
            finally:
                browser.close()
