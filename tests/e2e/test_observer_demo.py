"""The observer against the real system: after `choreo demo --orders 200 --seed 1`, its counts by
status equal the demo's outcome counts, and every flow is one causation tree rooted at its
order.placed. Two more demos run at once against that system afterwards each find the observer
agreeing on their own flows (as the bench's saga repetitions, which share one system)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.e2e.system import ROOT, choreo_args, run_demo, running_dev
from tests.support import wait_until

pytestmark = pytest.mark.slow


def test_the_observer_judges_the_demo_as_the_demo_does(tmp_path: Path) -> None:
    with running_dev(tmp_path / "dev") as dev:
        observer = dev.env["CHOREO_OBSERVER_PORT"]
        url = f"http://127.0.0.1:{observer}"
        summary = run_demo(
            "--orders",
            "200",
            "--seed",
            "1",
            "--bootstrap",
            dev.bootstrap,
            "--orders-url",
            dev.orders_url,
        )
        assert summary["exit_code"] == 0, summary["stderr"]
        outcomes = summary["outcomes"]
        assert sum(outcomes.values()) == 200

        def judged() -> bool:
            counts = httpx.get(f"{url}/api/counts", params={"saga": "order"}, timeout=10).json()
            return bool(counts["total"] == 200 and counts["by_status"]["running"] == 0)

        wait_until(judged, timeout=120, what="the observer to judge all 200 flows")
        counts = httpx.get(f"{url}/api/counts", timeout=10).json()
        assert {k: v for k, v in counts["by_status"].items() if v} == outcomes

        not_trees = httpx.get(f"{url}/api/flows", params={"connected": "false"}, timeout=10).json()
        assert not_trees["total"] == 0, not_trees["items"][:3]
        roots = httpx.get(f"{url}/api/flows", params={"limit": 200}, timeout=10).json()
        assert {item["root_type"] for item in roots["items"]} == {"order.placed"}

        stats = httpx.get(f"{url}/api/stats", timeout=10).json()
        assert stats["events"] == summary["events"]
        assert stats["rejects"] == 0
        wait_until(
            lambda: httpx.get(f"{url}/api/stats", timeout=10).json()["lifecycle_pending"] == 0,
            what="every lifecycle event sent",
        )

        # Two more demos at once against the same system, each checking the observer: each
        # compares the observer's verdicts on its own flows, not on everything that started
        # in its window (the other run's flows, or the 200 above).
        runs = [
            subprocess.Popen(
                choreo_args(
                    "demo",
                    "--json",
                    "--orders",
                    "8",
                    "--rate",
                    "4",
                    "--seed",
                    str(seed),
                    "--bootstrap",
                    dev.bootstrap,
                    "--orders-url",
                    dev.orders_url,
                    "--observer-url",
                    url,
                    "--timeout",
                    "60",
                ),
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for seed in (2, 3)
        ]
        for run in runs:
            out, err = run.communicate(timeout=120)
            assert run.returncode == 0, (out[-2000:], err[-2000:])
            again = json.loads(out)
            assert again["observer_agrees"] is True, again
            assert again["observer"] == again["outcomes"]
            assert sum(again["observer"].values()) == 8
