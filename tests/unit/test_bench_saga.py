"""The ``saga`` scenario and the demo's observer check it relies on, without a system.

A repetition whose demo fails its own check fails the scenario (no figures from a
broken run), and the demo compares the observer's verdicts on its own flows only.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from choreokit.services.bench import _saga
from choreokit.services.bench._context import Context, Sizes
from choreokit.services.example.demo import driver


def _demo_output(*, ok: bool) -> dict[str, Any]:
    outcomes = {"completed": 3, "failed": 1}
    return {
        "orders": 4,
        "ok": ok,
        "outcomes": outcomes,
        "observer": outcomes if ok else {"completed": 6, "failed": 2},
        "observer_agrees": ok,
        "unexplained": [],
        "flow_duration_ms": {"p50": 10.0, "p95": 20.0, "p99": 30.0, "max": 30.0},
        "flow_durations_ms": [10.0, 10.0, 20.0, 30.0],
        "events_per_second": 50.0,
    }


def _scenario(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, outputs: list[dict[str, Any]]
) -> dict[str, Any]:
    @contextlib.contextmanager
    def dev(_ctx: Context, _name: str) -> Iterator[tuple[None, dict[str, str]]]:
        yield None, {"orders": "http://127.0.0.1:1/orders", "saga-observer": "http://127.0.0.1:2/"}

    def demo(command: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        out = outputs.pop(0)
        return subprocess.CompletedProcess(command, 0 if out["ok"] else 1, json.dumps(out), "")

    monkeypatch.setattr(_saga, "running_dev", dev)
    monkeypatch.setattr(subprocess, "run", demo)
    ctx = Context("tansu", "127.0.0.1:9", 2, Sizes.quick(), tmp_path, None, log=lambda _: None)
    return _saga.run(ctx)


def test_the_saga_scenario_reports_figures_when_every_repetition_holds_its_check(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    result = _scenario(monkeypatch, tmp_path, [_demo_output(ok=True), _demo_output(ok=True)])
    assert result["flows"] == 8
    assert result["metrics"]["p50_ms"]["median"] == 10.0
    # The plot's curve: both repetitions' durations pooled, as (latency, fraction) pairs.
    assert result["cdf"][-1] == [30.0, 1.0]
    assert [point[0] for point in result["cdf"]] == sorted(point[0] for point in result["cdf"])
    assert len({point[1] for point in result["cdf"]}) == len(result["cdf"])


def test_the_saga_scenario_fails_naming_both_judges_when_a_repetition_does_not_hold(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with pytest.raises(_saga.DemoCheckError, match="repetition 2") as caught:
        _scenario(monkeypatch, tmp_path, [_demo_output(ok=True), _demo_output(ok=False)])
    message = str(caught.value)
    assert "{'completed': 3, 'failed': 1}" in message  # the demo's
    assert "{'completed': 6, 'failed': 2}" in message  # the observer's


async def test_the_demo_reads_the_observers_verdicts_on_its_own_flows_only() -> None:
    """Other flows in the window (an earlier run's tail, another demo's) do not count."""
    mine = {f"mine-{n}" for n in range(60)}
    listed = sorted(mine | {f"other-{n}" for n in range(30)})  # more than one page
    asked: list[dict[str, str]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        params = dict(request.url.params)
        asked.append(params)
        offset, limit = int(params["offset"]), int(params["limit"])
        items = [
            {"correlation_id": cid, "status": "failed" if cid.endswith("-7") else "completed"}
            for cid in listed[offset : offset + limit]
        ]
        return httpx.Response(200, json={"items": items, "total": len(listed)})

    since = datetime(2026, 12, 1, tzinfo=UTC)
    transport = httpx.MockTransport(answer)
    async with httpx.AsyncClient(base_url="http://observer", transport=transport) as client:
        statuses = await driver._observer_statuses(client, since, mine)
    assert set(statuses) == mine
    assert statuses["mine-7"] == "failed"
    assert {p["saga"] for p in asked} == {"order"}
    assert len(asked) > 1
