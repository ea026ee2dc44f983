"""docs/testing.md runs as written: the tutorial's service and the page's tests, under pytest."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FENCE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def files(page: str) -> dict[str, str]:
    out = {}
    for language, info, body in FENCE.findall((ROOT / "docs" / page).read_text()):
        match = re.search(r"file=(\S+)", info)
        if language == "python" and match:
            out[match.group(1)] = body
    return out


def test_the_testing_page_example_passes_against_the_tutorial_service(tmp_path: Path) -> None:
    written = {**files("tutorial.md"), **files("testing.md")}
    assert "tests/test_notifications.py" in written
    for relative, text in written.items():
        target = tmp_path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    result = subprocess.run(
        # Without the suite's heavy plugins, which the page's tests do not use.
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            *("-p", "no:cacheprovider", "-p", "no:schemathesis", "-p", "no:hypothesispytest"),
            *("-W", "ignore::pytest.PytestAssertRewriteWarning"),  # the editable install's hook
            "tests",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout, result.stdout
