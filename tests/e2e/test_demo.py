"""`choreo demo --orders 200 --seed 1` on the embedded default: every flow ends as injected."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from choreokit.services.example.demo import plan
from choreokit.services.example.demo.plan import EXPECTED, Kind
from tests.e2e.consistency import check_databases
from tests.e2e.system import run_demo

pytestmark = pytest.mark.slow


def test_the_demo_ends_every_flow_the_way_its_seed_injected(tmp_path: Path) -> None:
    data_dir = tmp_path / "demo"
    summary = run_demo("--orders", "200", "--seed", "1", "--data-dir", str(data_dir))
    assert summary["exit_code"] == 0, summary["stderr"]
    assert summary["ok"] is True
    assert summary["unexplained"] == []

    # the demo starts its own system, which asks for approvals: the demo decides them
    injected = Counter(order.kind for order in plan(200, 1, approvals=True))
    expected_outcomes: Counter[str] = Counter()
    for kind, n in injected.items():
        expected_outcomes[EXPECTED[kind][0].value] += n
    assert summary["outcomes"] == dict(expected_outcomes)
    assert {k: v["planned"] for k, v in summary["by_kind"].items()} == {
        kind.value: n for kind, n in injected.items()
    }
    assert all(v["as expected"] == v["planned"] for v in summary["by_kind"].values())
    versions = summary["order_placed_versions"]
    assert versions["v1"] > 0
    assert versions["v2"] > 0
    assert summary["flow_duration_ms"]["p99"] > 0
    # choreo dev ran the saga observer too; the demo checked its verdicts against its own
    assert summary["observer_agrees"] is True
    assert summary["observer"] == summary["outcomes"]
    assert summary["approvals"] == {
        "approved": injected[Kind.APPROVED],
        "rejected": injected[Kind.REJECTED],
    }
    assert injected[Kind.APPROVED] > 0
    assert injected[Kind.REJECTED] > 0

    counts = check_databases(data_dir)
    assert counts["orders"] == 200
