"""``idle``: the CPU an idle ``choreo dev`` spends, in % of one core.

``choreo dev --example`` runs on the engine's broker (every example service,
the observer and the gateway, each its own process); once it is ready and has
settled, the CPU time of its whole process tree is read from ``/proc`` before
and after ``idle_seconds`` with no traffic, once every consumer has been idle long
enough to have lengthened its fetch wait (``SETTLE_S``). On the embedded broker the broker
process counts too (``choreo dev`` runs it); Apache Kafka's JVM does not.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from choreokit.events import KafkaSettings
from choreokit.services.bench._context import Context, skipped
from choreokit.services.bench._dev import running_dev
from choreokit.services.bench._stats import summary

IDLE_AFTER_S: float = KafkaSettings.model_fields["fetch_idle_after"].default.total_seconds()
"""``CHOREO_KAFKA_FETCH_IDLE_AFTER``'s default: consumers lengthen their fetch wait only once
they have had no record this long (docs/events.md, "An idle consumer's fetch wait")."""

SETTLE_S = IDLE_AFTER_S + 2.0
"""From ready to the first window: past the idle delay, and the few empty polls after it
that take the wait up to the idle wait."""


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        tree.setdefault(int(fields[1]), []).append(int(entry.name))
    return tree


def _tree(root: int) -> list[int]:
    tree, found, todo = _children(), [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += tree.get(pid, [])
    return found


def _cpu_seconds(pids: list[int]) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def run(ctx: Context) -> dict[str, Any]:
    """Start ``choreo dev``, let it settle, measure its idle CPU ``repeat`` times."""
    if not Path("/proc/self/stat").exists():
        return {"variants": {"dev": {"label": "choreo dev", **skipped("no /proc here")}}}
    shares: list[float] = []
    broker_shares: list[float] = []
    with running_dev(ctx, "idle-dev") as (dev, _urls):
        time.sleep(SETTLE_S)
        pids = _tree(dev.pid)
        broker = ctx.broker_pid if ctx.engine == "tansu" else None
        if broker is not None:
            pids.append(broker)
        processes = len(pids)
        for rep in range(ctx.repeat):
            began, cpu = time.monotonic(), _cpu_seconds(pids)
            broker_cpu = _cpu_seconds([broker]) if broker is not None else 0.0
            time.sleep(ctx.sizes.idle_seconds)
            elapsed = time.monotonic() - began
            share = (_cpu_seconds(pids) - cpu) / elapsed * 100
            shares.append(share)
            said = f"  idle {ctx.engine} rep {rep + 1}: {share:.1f} % of a core"
            if broker is not None:
                broker_shares.append((_cpu_seconds([broker]) - broker_cpu) / elapsed * 100)
                said += f", of which the broker {broker_shares[-1]:.1f}"
            ctx.log(said)
    metrics = {"cpu_percent": summary(shares)}
    if broker_shares:
        metrics["broker_cpu_percent"] = summary(broker_shares)  # in the JSON, for the profile
    return {
        "unit": "% of a core",
        "variants": {
            "dev": {
                "label": "choreo dev --example, idle"
                + (" (with the embedded broker)" if broker is not None else ""),
                "processes": processes,
                "metrics": metrics,
            }
        },
    }
