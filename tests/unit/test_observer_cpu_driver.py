"""The observer's CPU driver (docs/benchmarks.md, "Observer per-event work") runs as documented."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from choreokit.services.bench import _observer_cpu

DOCS = Path(__file__).parents[2] / "docs" / "benchmarks.md"


def test_the_documented_commands_print_cpu_per_event(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    commands = re.findall(
        r"^python -m choreokit\.services\.bench\._observer_cpu(.*)$", DOCS.read_text(), re.M
    )
    assert len(commands) == 2
    for options in commands:
        # The documented options, on a backlog small enough for a unit test.
        argv = [*options.split(), "--events", "1500"]
        monkeypatch.setattr(sys, "argv", ["observer_cpu", *argv])
        _observer_cpu.main()
    out = capsys.readouterr().out
    for part in ("classify", "judge", "apply"):
        assert re.search(rf"{part}: +[0-9.]+ µs CPU per event \(1,500 events\)", out), out
    assert "function calls" in out  # the profile of --profile judge
