"""The human-checkpoint examples of the docs, run: docs/orchestration.md's durable wait
(on a SQLite file) and docs/saga-observer.md's checkpoint (the example's own)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from choreokit.services.example.contracts.saga import PAYMENT_APPROVAL

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = re.compile(
    r"<!-- example: (?P<name>[\w-]+) -->\n```(?P<lang>\w+)\n(?P<code>.*?)\n```", re.S
)


def example(page: str, name: str) -> str:
    found = {m["name"]: m["code"] for m in EXAMPLE.finditer((ROOT / "docs" / page).read_text())}
    return found[name]


def test_the_durable_wait_example_waits_and_resumes(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", example("orchestration.md", "durable-wait")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "charged 60000 (anna approved)"
    assert (tmp_path / "payments-approvals.sqlite3").exists()  # the wait was a row there


def test_the_checkpoint_example_is_the_order_sagas() -> None:
    scope: dict[str, Any] = {}
    exec(example("saga-observer.md", "checkpoint"), scope)
    assert scope["PAYMENT_APPROVAL"] == PAYMENT_APPROVAL
