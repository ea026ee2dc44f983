"""Inbox members (tests/chaos/inbox_member.py) as OS processes a fault test starts, kills and
restarts, with what each one printed gathered as it comes."""

from __future__ import annotations

import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import distinct, func, select

from tests.chaos.checker import Until, until_for
from tests.chaos.inbox_member import effects, prepare
from tests.child import JsonLinesChild


class Member(JsonLinesChild):
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
        self.started = False
        self.assigned: list[int] = []
        self.assignments = 0
        """Rebalances this process took part in (assignments it was given)."""
        self.handled: list[str] = []
        """Every ``ce_id`` this process finished a delivery of, repeats included, in order."""
        args = ["--bootstrap", bootstrap, "--prefix", prefix, "--group", group, "--db", db]
        args += ["--partitions", str(partitions), "--replication", str(replication)]
        super().__init__("tests.chaos.inbox_member", args, log)

    def take(self, message: dict[str, Any]) -> None:
        if "started" in message:
            self.started = True
        if "assigned" in message:
            self.assigned = [int(p) for p in message["assigned"]]
            self.assignments += 1
        if "handled" in message:
            self.handled.append(str(message["handled"]))

    def is_up(self) -> bool:
        """Whether it has started; fails at once, with its log's end, if it died first."""
        self.drain()
        if not self.started and not self.running:
            tail = self.log.read_text(errors="replace")[-2000:] if self.log else ""
            raise AssertionError(f"member {self.pid} ended ({self.process.returncode}):\n{tail}")
        return self.started

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


async def count_effects(db: str) -> tuple[int, int]:
    """Rows of the members' ``chaos_effects`` table, and the distinct flows among them."""
    engine = await prepare(db)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(select(func.count()).select_from(effects))).scalar_one()
            flows = (await conn.execute(select(func.count(distinct(effects.c.flow))))).scalar_one()
        return int(rows), int(flows)
    finally:
        await engine.dispose()
