"""Driving the real system from e2e tests: `choreo dev`, `choreo demo`, the databases, the pids."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from choreokit.services.runtime import free_port
from tests.support import wait_until

ROOT = Path(__file__).resolve().parents[2]


def choreo_args(*args: str) -> list[str]:
    return [sys.executable, "-m", "choreokit.services.cli", *args]


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


class Dev:
    """A `choreo dev` in a subprocess, with its own data directory and ports.

    With ``bootstrap`` it uses that Kafka (``choreo dev --bootstrap``) instead of starting
    the embedded broker.
    """

    def __init__(
        self, data_dir: Path, env: Mapping[str, str] | None = None, bootstrap: str | None = None
    ) -> None:
        self.data_dir = data_dir
        self.kafka = bootstrap
        self.orders_port = free_port()
        self.env = {
            **os.environ,
            "CHOREO_ORDERS_PORT": str(self.orders_port),
            "CHOREO_OBSERVER_PORT": str(free_port()),
            "CHOREO_GATEWAY_PORT": str(free_port()),
            **(env or {}),
        }
        self.port = free_port()
        self.seen_pids: set[int] = set()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log = (self.data_dir.parent / f"{self.data_dir.name}-dev.log").open("wb")
        broker = ["--bootstrap", self.kafka] if self.kafka else ["--port", str(self.port)]
        self.process = subprocess.Popen(
            choreo_args("dev", *broker, "--data-dir", str(self.data_dir)),
            cwd=ROOT,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        wait_until(lambda: self.state().get("ready") is True, timeout=120, what="choreo dev ready")

    def state(self) -> dict[str, Any]:
        try:
            state: dict[str, Any] = json.loads((self.data_dir / "dev.json").read_text())
        except (OSError, ValueError):
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"choreo dev exited with {self.process.returncode}") from None
            return {}
        self.seen_pids.update(int(p) for p in state.get("pids", {}).values())
        return state

    def pid(self, service: str) -> int:
        return int(self.state()["pids"][service])

    def restarts(self, service: str) -> int:
        return int(self.state().get("restarts", {}).get(service, 0))

    @property
    def bootstrap(self) -> str:
        return self.kafka or f"127.0.0.1:{self.port}"

    @property
    def orders_url(self) -> str:
        return f"http://127.0.0.1:{self.orders_port}"

    def stop(self) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        return self.process.returncode

    def db(self, name: str) -> sqlite3.Connection:
        return sqlite3.connect(self.data_dir / f"{name}.sqlite3", timeout=30)


@contextmanager
def running_dev(
    data_dir: Path, env: Mapping[str, str] | None = None, bootstrap: str | None = None
) -> Iterator[Dev]:
    dev = Dev(data_dir, env, bootstrap)
    dev.start()
    try:
        yield dev
    finally:
        dev.stop()


def run_demo(*args: str, timeout: float = 600) -> dict[str, Any]:
    result = subprocess.run(
        choreo_args("demo", "--json", *args),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.stdout, result.stderr[-3000:]
    summary: dict[str, Any] = json.loads(result.stdout)
    summary["exit_code"] = result.returncode
    summary["stderr"] = result.stderr[-3000:]
    return summary


def rows(db: sqlite3.Connection, sql: str, *params: object) -> list[tuple[Any, ...]]:
    return list(db.execute(sql, params).fetchall())
