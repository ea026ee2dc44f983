"""The whole run: per engine one broker, every scenario against it, one JSON document out."""

from __future__ import annotations

import contextlib
import importlib
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from choreokit.services.bench._context import ENGINES, Context, Sizes, postgres_url
from choreokit.services.bench._machine import commit, machine
from choreokit.services.bench._targets import evaluate

SCENARIOS = ("idle", "saga", "hop", "flow", "observer", "gateway")
"""Every scenario, in the order a run measures them.

The two that run a whole ``choreo dev`` come first, while the broker holds only
their own topics: its observer reads every topic, and would otherwise be
catching up the other scenarios' records while it is measured."""

SCHEMA = 1
"""The result document's version (``schema`` in the JSON)."""


def run_suite(
    *,
    engines: Sequence[str],
    scenarios: Sequence[str],
    repeat: int,
    quick: bool,
    source: Path,
    log: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True),
) -> dict[str, Any]:
    """Run ``scenarios`` on each of ``engines``; return the result document.

    A scenario that fails is recorded with its error and the run goes on: a
    report with one hole is worth more than none.

    Args:
        engines: ``tansu`` and/or ``kafka``.
        scenarios: Names from :data:`SCENARIOS`.
        repeat: Repetitions per measured figure (medians of these).
        quick: One small repetition of everything (proves the harness only).
        source: The checkout whose commit the report names.
        log: Where progress lines go.
    """
    sizes = Sizes.quick() if quick else Sizes()
    started = time.monotonic()
    document: dict[str, Any] = {
        "schema": SCHEMA,
        "generated": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "commit": commit(source),
        "plan": {
            "engines": list(engines),
            "scenarios": list(scenarios),
            "repeat": repeat,
            "quick": quick,
            "sizes": dict(vars(sizes)),
        },
        "engines": {},
    }
    for engine in engines:
        with tempfile.TemporaryDirectory(prefix=f"choreo-bench-{engine}-") as tmp:
            workdir = Path(tmp)
            log(f"{engine}: starting the broker")
            with _broker(engine, workdir) as (bootstrap, version, pid):
                ctx = Context(
                    engine=engine,
                    bootstrap=bootstrap,
                    repeat=repeat,
                    sizes=sizes,
                    workdir=workdir,
                    postgres_url=postgres_url(),
                    kafka_version=version,
                    broker_pid=pid,
                    log=log,
                )
                results: dict[str, Any] = {}
                for scenario in sorted(scenarios, key=SCENARIOS.index):
                    log(f"{engine}: {scenario}")
                    began = time.monotonic()
                    results[scenario] = _one(scenario, ctx)
                    results[scenario]["seconds"] = round(time.monotonic() - began, 1)
                document["engines"][engine] = {"name": ctx.engine_name, "scenarios": results}
    document["seconds"] = round(time.monotonic() - started, 1)
    document["machine"]["load_average_after"] = machine()["load_average"]
    document["targets"] = evaluate(document)
    return document


def _one(scenario: str, ctx: Context) -> dict[str, Any]:
    module = importlib.import_module(f"choreokit.services.bench._{scenario}")
    try:
        result: dict[str, Any] = module.run(ctx)
    except Exception as exc:  # noqa: BLE001 - one scenario's failure is reported, not fatal
        ctx.log("".join(traceback.format_exception(exc)))
        return {"error": f"{type(exc).__name__}: {exc}"}
    return result


@contextlib.contextmanager
def _broker(engine: str, workdir: Path) -> Iterator[tuple[str, str | None, int | None]]:
    from choreokit.services.runtime import KAFKA_VERSION, EmbeddedBroker, KafkaCluster, free_port

    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; choose from {', '.join(ENGINES)}")
    if engine == "tansu":
        broker = EmbeddedBroker(port=free_port(), log=workdir / "tansu.log")
        broker.start()
        try:
            yield broker.bootstrap, None, broker.pid
        finally:
            broker.stop()
        return
    cluster = KafkaCluster(1, directory=workdir / "kafka")
    cluster.start()
    try:
        yield cluster.bootstrap, KAFKA_VERSION, None
    finally:
        cluster.close()
