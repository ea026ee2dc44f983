"""Two members of one group in separate processes: they split the partitions, and a member
killed with SIGKILL before committing loses nothing: its events are handled by the other."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from choreokit.events import KafkaSettings, Service
from tests.support import catalog, unique, wait_until

pytestmark = pytest.mark.engines("tansu", "kafka")

ROOT = Path(__file__).resolve().parents[2]


class Member:
    def __init__(self, bootstrap: str, prefix: str, group: str, *, hang: bool) -> None:
        args = [sys.executable, "-m", "tests.integration.member"]
        args += ["--bootstrap", bootstrap, "--prefix", prefix, "--group", group]
        self.process = subprocess.Popen(
            [*args, "--hang"] if hang else args,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.lines: queue.Queue[dict[str, object]] = queue.Queue()
        self.assigned: list[int] = []
        self.handled: set[int] = set()
        threading.Thread(target=self._read, daemon=True).start()

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
            if "assigned" in message:
                self.assigned = list(message["assigned"])  # type: ignore[call-overload]
            if "handled" in message:
                self.handled.add(int(message["handled"]))  # type: ignore[call-overload]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


def test_a_killed_member_loses_nothing(kafka: KafkaSettings) -> None:
    prefix, group = unique(), unique("group")
    cat = catalog(prefix)
    hanging = Member(kafka.bootstrap, prefix, group, hang=True)
    healthy = Member(kafka.bootstrap, prefix, group, hang=False)
    members = (hanging, healthy)
    try:

        def split() -> bool:
            for member in members:
                member.drain()
            a, b = set(hanging.assigned), set(healthy.assigned)
            return bool(a) and bool(b) and not a & b and a | b == {0, 1, 2, 3}

        wait_until(split, timeout=30, what="the two members to split the four partitions")

        import asyncio

        async def publish() -> None:
            producer = Service(
                "producer", registry=cat.registry, settings=kafka, publishes=[cat.v2]
            )
            async with producer:
                for n in range(40):
                    await producer.publish(cat.v2(n=n, label="x"))

        asyncio.run(publish())

        def hanging_has_some() -> bool:
            hanging.drain()
            return bool(hanging.handled)

        wait_until(hanging_has_some, what="the hanging member to receive an event")
        seen_by_the_dead = set(hanging.handled)
        os.kill(hanging.process.pid, signal.SIGKILL)
        hanging.process.wait()

        def everything_handled() -> bool:
            healthy.drain()
            return healthy.handled == set(range(40))

        wait_until(everything_handled, timeout=40, what="the survivor to handle all 40 events")
        assert seen_by_the_dead <= healthy.handled
        assert healthy.assigned == [0, 1, 2, 3]
    finally:
        for member in members:
            member.stop()
