"""``choreo bench --quick observer`` end to end: a real broker, a real observer, the report.

The suite's figures are measured by ``choreo bench`` itself (docs/benchmarks.md),
never in the test suite; this runs the cheapest scenario for one small
repetition so the harness, the JSON and the page cannot rot.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.integration.test_cli import CHOREO

pytestmark = pytest.mark.integration


def test_a_quick_observer_run_writes_the_json_the_page_and_the_plot(tmp_path: Path) -> None:
    page = tmp_path / "benchmarks.md"
    page.write_text("# Benchmarks\n\nhand-written\n")
    result = subprocess.run(
        [
            *(CHOREO, "bench", "--quick", "observer", "--json", str(tmp_path / "run.json")),
            *("--write-docs", "--docs", str(page)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    document = json.loads((tmp_path / "run.json").read_text())
    assert document["schema"] == 1
    assert document["plan"] == {
        **document["plan"],
        "engines": ["tansu"],
        "scenarios": ["observer"],
        "repeat": 1,
        "quick": True,
    }
    assert document["machine"]["cpus"] >= 1
    assert len(document["commit"]["sha"]) == 40
    assert isinstance(document["commit"]["dirty"], bool)
    observer = document["engines"]["tansu"]["scenarios"]["observer"]
    sqlite = observer["variants"]["sqlite"]
    assert sqlite["backlog"] == document["plan"]["sizes"]["observer_backlog"]
    assert sqlite["metrics"]["ingest_rate"]["median"] > 0
    assert 0 < sqlite["catch_up_s"] < 60
    assert (
        sqlite["metrics"]["detail_ms"]["n"] == document["plan"]["sizes"]["observer_detail_requests"]
    )
    targets = {row["what"]: row for row in document["targets"]}
    assert (
        targets["observer: ingest on SQLite"]["measured"]
        == sqlite["metrics"]["ingest_rate"]["median"]
    )
    text = page.read_text()
    assert text.startswith("# Benchmarks\n\nhand-written\n")
    assert "### observer: ingest, backlog catch-up, the flow page" in text
    assert "| SQLite (WAL) |" in text
    assert "`--quick`" in text
    assert (tmp_path / "bench" / "observer-ingest.png").read_bytes().startswith(b"\x89PNG")
    assert json.loads((tmp_path / "bench" / "results.json").read_text()) == document
    # The terminal summary names each target with its verdict.
    assert "observer: ingest on SQLite" in result.stdout
