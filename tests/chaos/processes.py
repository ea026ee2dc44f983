"""Inbox members (tests/chaos/inbox_member.py) as OS processes a fault test starts, kills and
restarts, with what each one printed gathered as it comes."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.chaos.checker import Until, until_for

ROOT = Path(__file__).resolve().parents[2]


class Member:
    """One ``inbox_member`` process; :meth:`drain` takes in what it printed so far."""

    def __init__(
        self,
        bootstrap: str,
        *,
        prefix: str,
        group: str,
        db: str,
        partitions: int = 8,
        replication: int = 1,
        log: Path | None = None,
    ) -> None:
        args = [sys.executable, "-m", "tests.chaos.inbox_member", "--bootstrap", bootstrap]
        args += ["--prefix", prefix, "--group", group, "--db", db]
        args += ["--partitions", str(partitions), "--replication", str(replication)]
        self._stderr = log.open("ab") if log else subprocess.DEVNULL
        self.process = subprocess.Popen(
            args,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)},
        )
        self.lines: queue.Queue[dict[str, object]] = queue.Queue()
        self.started = False
        self.assigned: list[int] = []
        self.handled: list[str] = []
        """Every ``ce_id`` this process finished a delivery of, repeats included, in order."""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(json.loads(line))

    def drain(self) -> None:
        while True:
            try:
                message = self.lines.get_nowait()
            except queue.Empty:
                return
            if "started" in message:
                self.started = True
            if "assigned" in message:
                self.assigned = [int(p) for p in message["assigned"]]  # type: ignore[attr-defined]
            if "handled" in message:
                self.handled.append(str(message["handled"]))

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: a crash, wherever the process is."""
        if self.running:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)
        self._close()

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait: the member finishes its batch, commits and leaves the group."""
        if self.running:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=timeout)
        finally:
            if self.running:
                self.process.kill()
                self.process.wait()
            self._close()
        return code

    def _close(self) -> None:
        # What the process printed before it ended is still read, up to the pipe's end.
        self._reader.join(timeout=10)
        self.drain()
        if not isinstance(self._stderr, int):
            self._stderr.close()


@dataclass(frozen=True)
class Stage:
    """Where a fault test runs: the embedded broker, or the three-node Apache Kafka."""

    engine: str
    bootstrap: str
    replication: int

    @property
    def until(self) -> Until:
        return until_for(self.engine)


def stage(request: pytest.FixtureRequest) -> Stage:
    """The stage named by ``request.param``: ``tansu`` (session broker) or ``kafka``
    (the module's three-node cluster, replication 3, min ISR 2)."""
    if request.param == "tansu":
        tansu = request.getfixturevalue("tansu_broker")
        return Stage("tansu", tansu.bootstrap, 1)
    cluster = request.getfixturevalue("kafka_cluster")
    cluster.wait_ready()
    return Stage("kafka", cluster.bootstrap, 3)
