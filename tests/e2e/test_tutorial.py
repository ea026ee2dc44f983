"""docs/tutorial.md followed to the letter: its files written, its commands run, its output seen."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from choreokit.services.runtime import EmbeddedBroker, free_port

ROOT = Path(__file__).resolve().parents[2]
TUTORIAL = ROOT / "docs" / "tutorial.md"
CHOREO = str(Path(sys.executable).with_name("choreo"))
FENCE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


@dataclass
class Command:
    line: str
    expected: list[str] = field(default_factory=list)


def files() -> dict[str, str]:
    out = {}
    for language, info, body in FENCE.findall(TUTORIAL.read_text()):
        match = re.search(r"file=(\S+)", info)
        if language == "python" and match:
            out[match.group(1)] = body
    return out


def commands() -> list[Command]:
    out: list[Command] = []
    for language, _, body in FENCE.findall(TUTORIAL.read_text()):
        if language != "console":
            continue
        for line in body.splitlines():
            if line.startswith("$ "):
                out.append(Command(line[2:]))
            elif line.strip():
                out[-1].expected.append(line.strip())
    return out


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    embedded = EmbeddedBroker(port=free_port(), log=tmp_path / "broker.log")
    embedded.start()
    yield embedded
    embedded.stop()


def test_the_tutorial_works_as_written(tmp_path: Path, broker: EmbeddedBroker) -> None:
    written = files()
    assert set(written) == {
        "notifications/events.py",
        "notifications/__init__.py",
        "notifications/app.py",
    }
    for relative, text in written.items():
        target = tmp_path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    env = {
        **os.environ,
        "CHOREO_KAFKA_BOOTSTRAP": broker.bootstrap,
        "CHOREO_DATA_DIR": str(tmp_path / ".data"),
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
    }
    background: list[subprocess.Popen[bytes]] = []
    steps = commands()
    assert [c.line.split()[0] for c in steps] == ["export", "choreo", "choreo", "choreo", "choreo"]
    try:
        for step in steps:
            words = shlex.split(step.line)
            if words[0] == "export":
                name, _, value = words[1].partition("=")
                env[name] = value
                continue
            assert words[0] == "choreo"
            argv = [CHOREO, *words[1:]]
            if argv[-1] == "&":
                background.append(
                    subprocess.Popen(
                        argv[:-1],
                        cwd=tmp_path,
                        env=env,
                        stdout=subprocess.DEVNULL,
                        stderr=(tmp_path / "service.log").open("wb"),
                    )
                )
                continue
            result = subprocess.run(
                argv,
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert result.returncode == 0, f"{step.line}\n{result.stderr}"
            for expected in step.expected:
                assert expected in result.stdout, (
                    f"{step.line}: {expected!r} not in\n{result.stdout}"
                )
        assert all(p.poll() is None for p in background), (tmp_path / "service.log").read_text()
    finally:
        for process in background:
            process.terminate()
            process.wait(timeout=30)
    assert all(p.returncode == 0 for p in background), (tmp_path / "service.log").read_text()
    assert (tmp_path / "schemas" / "notification.sent" / "v1.json").exists()
