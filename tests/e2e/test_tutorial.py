"""docs/tutorial.md followed to the letter, in an empty directory with choreokit's wheel installed.

Its files are written, its commands run in that directory with the venv's
console scripts on ``PATH`` (nothing of this checkout on ``sys.path``), and
what they print is checked. Two things stand in for a terminal: the session's
venv (tests/e2e/conftest.py) is the one the tutorial creates, installed with the
same extras; and ``choreo dev`` gets a free port (``--port``), which the other
commands reach through ``CHOREO_KAFKA_BOOTSTRAP``, so runs never collide.
"""

from __future__ import annotations

import re
import shlex
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from choreokit.services.runtime import free_port
from tests.e2e.installed import EXTRAS, Installed, dev_state
from tests.support import wait_until

ROOT = Path(__file__).resolve().parents[2]
TUTORIAL = ROOT / "docs" / "tutorial.md"
FENCE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


@dataclass
class Command:
    line: str
    expected: list[str] = field(default_factory=list)


def files() -> dict[str, str]:
    out = {}
    for _, info, body in FENCE.findall(TUTORIAL.read_text()):
        match = re.search(r"file=(\S+)", info)
        if match:
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


def test_the_tutorial_declares_a_whole_project() -> None:
    assert set(files()) == {
        "pyproject.toml",
        "shop/__init__.py",
        "shop/events.py",
        "shop/notifications.py",
    }
    text = TUTORIAL.read_text()
    for command in commands():
        assert "PYTHONPATH" not in command.line
        assert "CHOREO_EVENT_MODULES" not in command.line
        assert not command.line.startswith("export")
    for module in re.findall(r"^from (\S+) import", text, flags=re.MULTILINE):
        assert not any(part.startswith("_") for part in module.split(".")), module


def test_the_tutorial_works_as_written(installed: Installed, tmp_path: Path) -> None:
    project = tmp_path / "shop"
    for relative, text in files().items():
        target = project / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    port = free_port()
    env = installed.env(CHOREO_KAFKA_BOOTSTRAP=f"127.0.0.1:{port}")
    steps = commands()
    assert [c.line.split()[0] for c in steps] == [
        "python",
        ".",
        "pip",
        "choreo",
        "choreo",
        "choreo",
        "choreo",
    ]
    background: list[subprocess.Popen[str]] = []
    dev_log = tmp_path / "dev.log"
    try:
        for step in steps:
            words = shlex.split(step.line)
            if words[:3] == ["python", "-m", "venv"] or words[0] == ".":
                continue  # the session's venv is this one, already activated in `env`
            if words[0] == "pip":
                assert words == ["pip", "install", f"choreokit[{EXTRAS}]"]
                continue  # installed from the wheel with these extras
            assert words[0] == "choreo"
            if words[-1] == "&":
                assert words[1] == "dev", "only choreo dev runs in the background"
                out = dev_log.open("w")
                process = subprocess.Popen(
                    [installed.bin("choreo"), *words[1:-1], "--port", str(port)],
                    cwd=project,
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
                out.close()
                background.append(process)

                def up(
                    process: subprocess.Popen[str] = process, expected: list[str] = step.expected
                ) -> bool:
                    assert process.poll() is None, dev_log.read_text()
                    printed = dev_log.read_text()
                    return all(line in printed for line in expected)

                wait_until(up, timeout=120, what="choreo dev to say it is up")
                assert dev_state(project / ".choreo" / "dev").get("ready") is True
                continue
            result = installed.run(words, cwd=project, env=env, timeout=120)
            assert result.returncode == 0, f"{step.line}\n{result.stderr}"
            for expected in step.expected:
                assert expected in result.stdout, (
                    f"{step.line}: {expected!r} not in\n{result.stdout}"
                )
        assert all(p.poll() is None for p in background), dev_log.read_text()
    finally:
        for process in background:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
            process.wait(timeout=60)
    assert all(p.returncode == 0 for p in background), dev_log.read_text()
    schemas = project / "schemas"
    written = sorted(p.relative_to(schemas).as_posix() for p in schemas.rglob("*") if p.is_file())
    assert written == ["asyncapi.yaml", "notification.sent/v1.json", "order.placed/v1.json"]
