"""A short coverage-guided fuzzing run (Atheris/libFuzzer) of the envelope decoder and the
gateway's HTTP binding: about 10 s each; any crash fails with the input libFuzzer saved."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

FUZZ_DIR = Path(__file__).resolve().parents[1] / "fuzz"
SECONDS = 10


@pytest.mark.slow
@pytest.mark.parametrize("target", ["decoder.py", "gateway_binding.py"])
def test_a_bounded_fuzzing_run_finds_no_crash(target: str, tmp_path: Path) -> None:
    if importlib.util.find_spec("atheris") is None:
        pytest.fail("atheris is not installed: run scripts/bootstrap dev (it is a dev tool)")
    run = subprocess.run(
        [
            sys.executable,
            str(FUZZ_DIR / target),
            f"-max_total_time={SECONDS}",
            "-rss_limit_mb=1024",
            f"-artifact_prefix={tmp_path}/",
            "-print_final_stats=1",
        ],
        capture_output=True,
        text=True,
        timeout=SECONDS + 60,
        check=False,
        cwd=tmp_path,
    )
    crashes = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(("crash", "leak")))
    assert not crashes, f"{target} crashed on {crashes}:\n{run.stderr[-4000:]}"
    assert run.returncode == 0, f"{target} failed:\n{run.stderr[-4000:]}"
    assert "Done" in run.stderr  # the fuzzer ran to its time limit
