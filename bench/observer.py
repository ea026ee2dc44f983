"""Saga observer benchmark: ingest rate (events/s) and flow-detail latency for a 1,000-event flow.

Publishes order flows (the real event classes, synthetic ids) to a fresh embedded
broker, then starts an observer on an empty database and times how fast it
applies them, from its first applied batch to the last. Then asks the HTTP API
for the 1,000-event flow's detail, repeatedly, and reports the latency.

    python -m bench.observer                       # SQLite and PostgreSQL, 20,000 events
    python -m bench.observer --backend sqlite --events 50000

PostgreSQL comes from $CHOREO_BENCH_POSTGRES_URL (else $CHOREO_TEST_POSTGRES_URL, else
postgresql://postgres@127.0.0.1:5432/test); a database is created and dropped for the run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.engine import make_url

from choreokit.events import KafkaSettings
from choreokit.services.runtime import EmbeddedBroker, free_port
from choreokit.services.runtime.app import Runtime
from choreokit.services.runtime.database import create_engine
from choreokit.services.saga_observer.app import ObserverApp
from choreokit.services.saga_observer.settings import ObserverSettings
from tests.order_flows import long_flow, mix, publish, steps_of

DETAIL_REQUESTS = 50


async def _postgres(url: str, statement: str) -> None:
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(statement))
    finally:
        await engine.dispose()


async def _database(backend: str, workdir: Path) -> tuple[str, tuple[str, str] | None]:
    """A fresh database for the run, and what to drop afterwards (PostgreSQL)."""
    if backend != "postgresql":
        return f"sqlite:///{workdir / f'bench-{uuid.uuid4().hex[:8]}.sqlite3'}", None
    base = os.environ.get(
        "CHOREO_BENCH_POSTGRES_URL",
        os.environ.get("CHOREO_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    name = f"bench_observer_{uuid.uuid4().hex[:8]}"
    await _postgres(base, f'CREATE DATABASE "{name}"')
    return make_url(base).set(database=name).render_as_string(hide_password=False), (base, name)


async def _ingest_rate(client: httpx.AsyncClient, total: int) -> float:
    """Events applied per second, from the first applied batch to the last."""
    first_at, first_count = None, 0
    while True:
        stats = (await client.get("/api/stats")).json()
        now = time.perf_counter()
        if first_at is None and stats["events"] > 0:
            first_at, first_count = now, stats["events"]
        if stats["events"] >= total:
            assert first_at is not None
            return (total - first_count) / max(now - first_at, 1e-9)
        await asyncio.sleep(0.25)


async def _detail_latency(client: httpx.AsyncClient, flow: str) -> tuple[list[float], int]:
    latencies, size = [], 0
    for _ in range(DETAIL_REQUESTS):
        started = time.perf_counter()
        response = await client.get(f"/api/flows/{flow}")
        latencies.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
        size = len(response.content)
        assert len(response.json()["events"]) == 1000
    return sorted(latencies), size


async def run(backend: str, events: int, workdir: Path) -> dict[str, Any]:
    flows = mix(max(1, (events - 1000) // 5), seed=1)
    big = long_flow(1000)
    steps = steps_of([*flows, big])
    db, drop = await _database(backend, workdir)
    broker = EmbeddedBroker(port=free_port(), log=workdir / "tansu.log")
    broker.start()
    try:
        kafka = KafkaSettings(bootstrap=broker.bootstrap)
        await publish(kafka, steps)
        settings = ObserverSettings(db=db, port=free_port(), timeout=timedelta(hours=1))
        app = ObserverApp(Runtime(name="saga-observer", kafka=kafka, data_dir=workdir), settings)
        stop = asyncio.Event()
        task = asyncio.ensure_future(app.run(stop))
        await asyncio.wait_for(app.ready.wait(), 60)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{app.port}", timeout=60) as client:
            rate = await _ingest_rate(client, len(steps))
            latencies, size = await _detail_latency(client, big.correlation_id)
        stop.set()
        await task
    finally:
        broker.stop()
        if drop is not None:
            await _postgres(drop[0], f'DROP DATABASE IF EXISTS "{drop[1]}" WITH (FORCE)')
    return {
        "backend": backend,
        "events": len(steps),
        "ingest_events_per_s": round(rate),
        "detail_p50_ms": round(statistics.median(latencies), 1),
        "detail_p95_ms": round(latencies[int(0.95 * (len(latencies) - 1))], 1),
        "detail_max_ms": round(latencies[-1], 1),
        "detail_bytes": size,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--backend", action="append", choices=["sqlite", "postgresql"], help="repeatable"
    )
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = [
            asyncio.run(run(backend, args.events, Path(tmp)))
            for backend in args.backend or ["sqlite", "postgresql"]
        ]
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(
        "| database | events | ingest (events/s) | 1,000-event flow detail p50 / p95 / max | size |"
    )
    print("|---|---:|---:|---|---:|")
    for r in results:
        print(
            f"| {r['backend']} | {r['events']:,} | {r['ingest_events_per_s']:,} | "
            f"{r['detail_p50_ms']} / {r['detail_p95_ms']} / {r['detail_max_ms']} ms | "
            f"{r['detail_bytes'] // 1024} KiB |"
        )


if __name__ == "__main__":
    main()
