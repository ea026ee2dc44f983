"""choreokit as a user gets it: the wheel built from this checkout, installed in a fresh venv.

One wheel and one venv per test session (``tests/e2e/conftest.py``): the venv
has ``choreokit[sql,dev]`` (what docs/tutorial.md installs), resolved with
``constraints.txt`` so pip's cache answers.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support import wait_until

ROOT = Path(__file__).resolve().parents[2]
EXTRAS = "sql,dev"
"""The extras the tutorial installs: the Inbox's database, and the embedded broker."""


def build_wheel(out: Path) -> Path:
    """Build choreokit's wheel from this checkout into ``out`` (hatchling, no isolation)."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(out),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, (
        f"building the wheel failed (hatchling comes with 'scripts/bootstrap dev'):\n"
        f"{result.stderr}"
    )
    (wheel,) = out.glob("choreokit-*.whl")
    return wheel


def wheel_metadata(wheel: Path) -> tuple[set[str], list[str]]:
    """The wheel's top-level names (but its dist-info) and its ``Requires-Dist`` lines."""
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        text = archive.read(metadata).decode()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    requires = [
        line.removeprefix("Requires-Dist:").strip()
        for line in text.splitlines()
        if line.startswith("Requires-Dist:")
    ]
    return top, requires


@dataclass(frozen=True)
class Installed:
    """A fresh venv with the wheel and :data:`EXTRAS` installed."""

    wheel: Path
    venv: Path

    def bin(self, name: str) -> str:
        """A console script (or the interpreter) of the venv."""
        return str(self.venv / "bin" / name)

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a shell with the venv activated (nothing of this checkout's)."""
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"} and not k.startswith("CHOREO_")
        }
        env["PATH"] = os.pathsep.join([str(self.venv / "bin"), env.get("PATH", "")])
        env["VIRTUAL_ENV"] = str(self.venv)
        return {**env, **extra}

    def run(
        self, argv: list[str], cwd: Path, env: Mapping[str, str] | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` (its first word a console script of the venv) in ``cwd``."""
        return subprocess.run(
            [self.bin(argv[0]), *argv[1:]],
            cwd=cwd,
            env=dict(env or self.env()),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def install(wheel: Path, venv: Path) -> Installed:
    """Create ``venv`` and install ``choreokit[EXTRAS]`` from ``wheel`` into it."""
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    result = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-compile",  # the tests import a fraction of it; byte-compiling all is slow
            "-c",
            str(ROOT / "constraints.txt"),
            f"choreokit[{EXTRAS}] @ {wheel.as_uri()}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, f"pip install of the wheel failed:\n{result.stderr}"
    return Installed(wheel=wheel, venv=venv)


def dev_state(data_dir: Path) -> dict[str, Any]:
    """``dev.json`` of a ``choreo dev`` (empty until it is written)."""
    try:
        state: dict[str, Any] = json.loads((data_dir / "dev.json").read_text())
    except (OSError, ValueError):
        return {}
    return state


@contextmanager
def choreo_dev(
    installed: Installed, project: Path, argv: list[str], env: Mapping[str, str], log: Path
) -> Iterator[subprocess.Popen[str]]:
    """Run ``choreo dev ARGV`` in ``project`` until the block ends; wait until it is ready."""
    out = log.open("w")
    process = subprocess.Popen(
        [installed.bin("choreo"), "dev", *argv],
        cwd=project,
        env=dict(env),
        stdout=out,
        stderr=subprocess.STDOUT,
        text=True,
    )
    data_dir = project / ".choreo" / "dev"

    def ready() -> bool:
        assert process.poll() is None, f"choreo dev exited:\n{log.read_text()}"
        return dev_state(data_dir).get("ready") is True

    try:
        wait_until(ready, timeout=120, what="choreo dev ready")
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        out.close()
