"""``observer``: ingest events/s, a backlog's catch-up, and the flow page of a 1,000-event flow.

A backlog of order-like flows (five events each, with correlation and
causation, plus one flow of 1,000 events) is published once per engine; then
for each database an observer starts on an empty one and catches up. The
catch-up time runs from the observer's start until every event is applied;
the ingest rate is measured over ``observer_windows`` equal slices of the
backlog (the spread is over those slices). Then ``GET /api/flows/{id}`` of the
1,000-event flow, ``observer_detail_requests`` times.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from choreokit.services.bench._context import Context, skipped
from choreokit.services.bench._databases import fresh_database
from choreokit.services.bench._stats import percentile, ratio, summary

PREFIX = "bench.obs."
TOPICS = tuple(f"{PREFIX}{t}" for t in ("orders", "inventory", "payments", "shipping"))
FLOW_STEPS = (
    ("bench.order.placed", "orders"),
    ("bench.stock.reserved", "inventory"),
    ("bench.payment.authorized", "payments"),
    ("bench.shipment.completed", "shipping"),
    ("bench.order.confirmed", "orders"),
)
BIG_FLOW = 1_000
BACKENDS = {"sqlite": "SQLite (WAL)", "postgresql": "PostgreSQL"}
CATCH_UP_TIMEOUT = 600.0


def _spec() -> Any:
    from choreokit.events import SagaSpec

    types = [t for t, _ in FLOW_STEPS]
    return SagaSpec(
        name="bench-order",
        start=types[0],
        success=(types[-1],),
        steps={a: (b,) for a, b in itertools.pairwise(types)},
        timeout=timedelta(hours=1),
    )


def _records(backlog: int) -> tuple[list[tuple[str, bytes, bytes, list[tuple[str, bytes]]]], str]:
    """The backlog's records (topic, key, value, headers) and the big flow's id."""
    from choreokit.events import Envelope, encode_headers

    start = datetime.now(UTC) - timedelta(minutes=5)
    records: list[tuple[str, bytes, bytes, list[tuple[str, bytes]]]] = []

    def add(flow: str, index: int, event_type: str, topic: str, cause: str | None) -> str:
        eid = str(uuid.uuid4())
        envelope = Envelope(
            id=eid,
            source=f"/services/{topic}",
            type=event_type,
            dataversion=1,
            time=start + timedelta(milliseconds=index),
            correlation_id=flow,
            causation_id=cause,
        )
        value = json.dumps({"order_id": flow[:8], "step": index}).encode()
        records.append((f"{PREFIX}{topic}", flow.encode(), value, encode_headers(envelope)))
        return eid

    big = str(uuid.uuid4())
    cause: str | None = add(big, 0, FLOW_STEPS[0][0], FLOW_STEPS[0][1], None)
    for i in range(1, BIG_FLOW - 1):
        cause = add(big, i, "bench.stock.reserved", "inventory", cause)
    add(big, BIG_FLOW - 1, FLOW_STEPS[-1][0], FLOW_STEPS[-1][1], cause)
    for n in range(max(0, backlog - BIG_FLOW) // len(FLOW_STEPS)):
        flow = str(uuid.uuid4())
        cause = None
        for i, (event_type, topic) in enumerate(FLOW_STEPS):
            cause = add(flow, n * 10 + i, event_type, topic, cause)
    return records, big


async def _publish(bootstrap: str, records: list[Any]) -> None:
    from aiokafka import AIOKafkaProducer

    from choreokit.events import KafkaSettings, ensure_topics

    await ensure_topics(KafkaSettings(bootstrap=bootstrap), TOPICS)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        pending = []
        for topic, key, value, headers in records:
            pending.append(await producer.send(topic, value=value, key=key, headers=headers))
            if len(pending) >= 2000:  # noqa: PLR2004 - in flight at once
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


def run(ctx: Context) -> dict[str, Any]:
    """Publish the backlog once; catch up from it on each database."""
    records, big = _records(ctx.sizes.observer_backlog)
    started = time.perf_counter()
    asyncio.run(_publish(ctx.bootstrap, records))
    ctx.log(
        f"  observer {ctx.engine}: {len(records):,} events published in "
        f"{time.perf_counter() - started:.1f} s"
    )
    variants: dict[str, Any] = {}
    for backend, label in BACKENDS.items():
        if backend == "postgresql" and ctx.postgres_url is None:
            variants[backend] = {
                "label": label,
                **skipped(
                    "no PostgreSQL (set CHOREO_BENCH_POSTGRES_URL or CHOREO_TEST_POSTGRES_URL)"
                ),
            }
            continue
        variants[backend] = {
            "label": label,
            **asyncio.run(_catch_up(ctx, backend, len(records), big)),
        }
        ctx.log(
            f"  observer {ctx.engine} {backend}: caught up in {variants[backend]['catch_up_s']} s, "
            f"{variants[backend]['metrics']['ingest_rate']['median']} events/s"
        )
    sqlite = variants["sqlite"].get("metrics", {}).get("ingest_rate")
    postgres = variants["postgresql"].get("metrics", {}).get("ingest_rate")
    return {
        "unit": "events/s",
        "variants": variants,
        "ratios": {"postgresql/sqlite": ratio(postgres, sqlite)},
        "notes": [
            f"the {len(records):,}-event backlog is ingested once per database; the rate's "
            f"spread is over its {ctx.sizes.observer_windows} equal slices",
        ],
    }


async def _catch_up(ctx: Context, backend: str, total: int, big: str) -> dict[str, Any]:
    import httpx

    from choreokit.events import KafkaSettings
    from choreokit.services.runtime import free_port
    from choreokit.services.runtime.app import Runtime
    from choreokit.services.saga_observer.app import ObserverApp
    from choreokit.services.saga_observer.catalog import SagaCatalog
    from choreokit.services.saga_observer.settings import ObserverSettings

    async with fresh_database(backend, ctx.workdir, ctx.postgres_url) as db:
        kafka = KafkaSettings(bootstrap=ctx.bootstrap)
        settings = ObserverSettings(
            db=db,
            port=free_port(),
            topic_pattern=rf"^{PREFIX.replace('.', '[.]')}",
            group=f"bench-observer-{uuid.uuid4().hex[:8]}",
        )
        workdir = ctx.workdir / f"observer-{backend}"
        workdir.mkdir(exist_ok=True)
        app = ObserverApp(
            # As `choreo run saga-observer` runs it: the process is the observer's (its
            # start-up heap is frozen once ready); this harness only watches its metrics.
            Runtime(name="saga-observer", kafka=kafka, data_dir=workdir, owns_process=True),
            settings,
            catalog=SagaCatalog([_spec()]),
        )
        stop = asyncio.Event()
        began = time.perf_counter()
        task = asyncio.ensure_future(app.run(stop))
        try:
            ready_at, marks = await _watch(app, total, ctx.sizes.observer_windows, task)
            caught_up = marks[-1][0] - began
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{settings.port}", timeout=60
            ) as client:
                latencies = await _detail(client, big, ctx.sizes.observer_detail_requests)
        finally:
            stop.set()
            await task
    rates = [(b[1] - a[1]) / (b[0] - a[0]) for a, b in itertools.pairwise(marks) if b[0] > a[0]]
    if not rates:  # a backlog small enough for one batch: the rate since ingest began
        rates = [total / max(marks[-1][0] - ready_at, 1e-6)]
    return {
        "backlog": total,
        "catch_up_s": round(caught_up, 2),
        "metrics": {
            "ingest_rate": summary(rates),
            "detail_ms": summary(latencies),
        },
        "detail_p95_ms": round(percentile(latencies, 95), 1),
    }


async def _watch(
    app: Any, total: int, windows: int, task: asyncio.Future[None]
) -> tuple[float, list[tuple[float, int]]]:
    """When the observer was ready; (time, events applied) at the first batch, each slice's end."""
    deadline = time.monotonic() + CATCH_UP_TIMEOUT
    ready_at: float | None = None
    bounds = [total * (i + 1) // windows for i in range(windows)]
    marks: list[tuple[float, int]] = []
    while len(marks) < windows + 1:
        if task.done():
            task.result()
            raise RuntimeError("the observer stopped before it caught up")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the observer did not catch up within {CATCH_UP_TIMEOUT:g} s")
        count = app.metrics.registry.get_sample_value(
            "choreo_observer_records_total", {"kind": "event"}
        )
        applied = int(count or 0)
        now = time.perf_counter()
        if ready_at is None and app.ready.is_set():
            ready_at = now
        if not marks and applied > 0:
            marks.append((now, applied))
        while marks and len(marks) <= windows and applied >= bounds[len(marks) - 1]:
            marks.append((now, applied))
        await asyncio.sleep(0.02)
    return (marks[0][0] if ready_at is None else ready_at), marks


async def _detail(client: Any, flow: str, requests: int) -> list[float]:
    latencies = []
    for _ in range(requests):
        began = time.perf_counter()
        response = await client.get(f"/api/flows/{flow}")
        latencies.append((time.perf_counter() - began) * 1000)
        response.raise_for_status()
        if len(response.json()["events"]) != BIG_FLOW:
            raise RuntimeError("the flow page did not hold the whole 1,000-event flow")
    return latencies
