"""bench/flow.py, run for a few flows on the embedded broker so it cannot rot.

The benchmark itself stays out of the suite's time (docs/benchmarks.md); this runs both of
its scenarios (choreokit's five handler processes and the raw aiokafka chain) for about ten
flows and checks that every flow arrived and the report has the shape the docs quote.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_the_flow_benchmark_runs_both_scenarios_for_a_few_flows() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.flow",
            "--engine",
            "tansu",
            "--rate",
            "20",
            "--seconds",
            "0.5",
            "--json",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert set(report["engines"]) == {"tansu"}
    for scenario in ("choreokit", "aiokafka"):
        measured = report["engines"]["tansu"][scenario]
        assert measured["flows"] == 10, measured
        assert 0 < measured["p50_ms"] <= measured["p99_ms"] <= measured["max_ms"], measured
