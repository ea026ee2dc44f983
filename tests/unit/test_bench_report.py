"""``choreo bench``'s report: medians and spread, targets, and a page rendered from JSON alone."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from choreokit.services.bench import evaluate, load_json, write_docs
from choreokit.services.bench._markdown import BEGIN, END, render
from choreokit.services.bench._stats import ratio, summary
from choreokit.services.cli import cli

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "docs" / "bench" / "results.json"


def test_a_summary_is_the_median_with_min_max_and_quartiles() -> None:
    s = summary([5.0, 1.0, 3.0, 2.0, 4.0])
    assert (s["n"], s["median"], s["min"], s["max"]) == (5, 3.0, 1.0, 5.0)
    assert (s["q1"], s["q3"]) == (2.0, 4.0)
    assert s["values"] == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert summary([7.0])["q1"] == summary([7.0])["q3"] == 7.0
    assert summary([])["median"] is None


def test_a_ratio_is_of_the_medians_and_none_when_a_side_is_missing() -> None:
    assert ratio(summary([6.0, 6.0, 9.0]), summary([3.0, 2.0, 4.0])) == 2.0
    assert ratio(None, summary([1.0])) is None
    assert ratio(summary([1.0]), summary([0.0])) is None


def _document() -> dict[str, Any]:
    return load_json(COMMITTED)


def test_the_targets_say_met_not_met_or_not_measured() -> None:
    document = _document()
    hop = document["engines"]["tansu"]["scenarios"]["hop"]
    hop["ratios"]["choreokit/aiokafka"] = 0.61
    hop["ratios"]["traced/untraced"] = 0.59
    rows = {(r["engine"], r["what"]): r for r in evaluate(document)}
    assert rows[("tansu", "hop: choreokit untraced / raw aiokafka")]["met"] is True
    assert rows[("tansu", "hop: traced 100 % / untraced")]["met"] is False
    # The flow targets are Apache Kafka's only.
    assert not any(engine == "tansu" and what.startswith("flow:") for engine, what in rows)
    # A catch-up of less than a full 100,000-event backlog does not count.
    observer = document["engines"]["tansu"]["scenarios"]["observer"]
    observer["variants"]["sqlite"]["backlog"] = 2_000
    rows = {(r["engine"], r["what"]): r for r in evaluate(document)}
    caught_up = rows[("tansu", "observer: 100,000-event backlog caught up (SQLite)")]
    assert caught_up["measured"] is None
    assert caught_up["met"] is None


def test_the_page_is_regenerated_from_the_json_alone_and_keeps_the_hand_written_text(
    tmp_path: Path,
) -> None:
    page = tmp_path / "benchmarks.md"
    page.write_text(f"# Benchmarks\n\nhand-written\n\n{BEGIN}\nstale\n{END}\n\nmore prose\n")
    document = _document()
    first = write_docs(copy.deepcopy(document), page)
    text = page.read_text()
    assert text.startswith("# Benchmarks\n\nhand-written\n\n")
    assert text.endswith("\n\nmore prose\n")
    assert "stale" not in text
    assert "| engine | target | measured | bound | met |" in text
    assert document["commit"]["sha"][:12] in text
    pngs = {name: path.read_bytes() for name, path in first.items() if path.suffix == ".png"}
    assert "hop-throughput" in pngs
    assert all(b.startswith(b"\x89PNG") for b in pngs.values())
    second = write_docs(copy.deepcopy(document), page)
    assert page.read_text() == text
    assert {n: p.read_bytes() for n, p in second.items() if p.suffix == ".png"} == pngs
    assert json.loads((tmp_path / "bench" / "results.json").read_text()) == document


def test_the_committed_page_is_the_committed_results_rendered() -> None:
    """docs/benchmarks.md's generated section is what docs/bench/results.json renders to."""
    document = _document()
    plots = {
        path.stem: f"bench/{path.name}" for path in sorted((ROOT / "docs" / "bench").glob("*.png"))
    }
    section = render(document, plots)
    page = (ROOT / "docs" / "benchmarks.md").read_text()
    generated = page.partition(BEGIN)[2].partition(END)[0]
    assert generated.strip() == section.strip()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["bench", "nope"], "'nope' is not one of"),
        (["bench", "--repeat", "0"], "0 is not in the range"),
        (["bench", "--engine", "redpanda"], "'redpanda' is not one of"),
        (["bench", "hop", "--from-json", str(COMMITTED)], "give no scenarios"),
        (["bench", "--from-json", "/nonexistent.json"], "does not exist"),
    ],
)
def test_bench_refuses_what_it_cannot_run_before_starting_anything(
    args: list[str], says: str
) -> None:
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert says in result.output


def test_the_transactions_variant_is_skipped_saying_why_until_the_setting_exists(
    tmp_path: Path,
) -> None:
    from choreokit.services.bench import Sizes
    from choreokit.services.bench._context import Context
    from choreokit.services.bench._hop import VARIANTS, _unavailable, transactions_supported

    txn = next(v for v in VARIANTS if v.transactions)

    def context(engine: str) -> Context:
        return Context(engine, "127.0.0.1:1", 1, Sizes.quick(), tmp_path, postgres_url=None)

    assert _unavailable(txn, context("tansu")) == "the embedded broker has no transactions"
    on_kafka = _unavailable(txn, context("kafka"))
    if transactions_supported():
        assert on_kafka is None
    else:
        assert on_kafka is not None
        assert "KafkaSettings has no transactions setting" in on_kafka
    inbox = next(v for v in VARIANTS if v.inbox == "postgresql")
    assert "CHOREO_BENCH_POSTGRES_URL" in (_unavailable(inbox, context("tansu")) or "")
