"""Liveness: a handler slower than max.poll.interval.ms causes no rebalance; a consumer that
makes no progress while its lag grows is not ready on /healthz; its metrics say why."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI

from choreokit.events import HandlerContext, KafkaSettings, Service
from choreokit.services.runtime.http import add_health_and_metrics
from choreokit.tracing import configure_metrics
from tests.support import catalog, unique, wait_for

pytestmark = pytest.mark.engines("tansu", "kafka")

POLL_INTERVAL = timedelta(seconds=3)


async def test_a_handler_slower_than_the_poll_interval_causes_no_rebalance(
    kafka: KafkaSettings,
) -> None:
    """The slow record's key goes on in a lane; polls go on, the member keeps its partitions."""
    settings = kafka.model_copy(update={"max_poll_interval": POLL_INTERVAL})
    cat = catalog()
    release = asyncio.Event()
    handled: list[int] = []
    service = Service(unique("slow"), registry=cat.registry, settings=settings)

    @service.handler(cat.v2)
    async def on_item(event: object, ctx: HandlerContext) -> None:
        if event.n == 0:  # type: ignore[attr-defined]
            await release.wait()  # a handler far slower than max.poll.interval.ms
        handled.append(event.n)  # type: ignore[attr-defined]

    producer = Service(unique("producer"), registry=cat.registry, settings=kafka)
    async with service, producer:
        try:
            await producer.publish(cat.v2(n=0, label="slow"))
            started = time.monotonic()
            for n in range(1, 6):
                await producer.publish(cat.v2(n=n, label="quick"))
            await wait_for(lambda: len(handled) == 5, what="the quick records")
            # Hold the slow one for two poll intervals: with polls blocked, the member leaves.
            span = 2 * POLL_INTERVAL.total_seconds()
            await wait_for(lambda: time.monotonic() - started > span, timeout=span + 5, what="t")
        finally:
            release.set()
        await wait_for(lambda: 0 in handled, what="the slow record")
        await wait_for(lambda: service.lag() == 0, what="every record committed")
    assert sorted(handled) == [0, 1, 2, 3, 4, 5]  # each once: nothing was redelivered
    assert service.stats.rebalances == 0
    assert service.stats.commit_failures == 0
    assert service.stats.parked == 1


async def test_no_progress_with_growing_lag_is_not_ready(kafka: KafkaSettings) -> None:
    """Every handler hangs (a dependency is down): /healthz turns 503; back to 200 once freed."""
    settings = kafka.model_copy(
        update={"max_poll_interval": timedelta(seconds=2), "stall_after": timedelta(seconds=2)}
    )
    cat = catalog()
    release = asyncio.Event()
    metrics = configure_metrics("stuck", otlp=False)
    service = Service(unique("stuck"), registry=cat.registry, settings=settings)
    service.use(metrics.middleware)
    metrics.middleware.observe(service)

    @service.handler(cat.v2)
    async def on_item(event: object) -> None:
        await release.wait()

    app = FastAPI()
    add_health_and_metrics(app, metrics.registry, service.healthy)
    producer = Service(unique("producer"), registry=cat.registry, settings=kafka)
    transport = httpx.ASGITransport(app=app)
    async with (
        service,
        producer,
        httpx.AsyncClient(transport=transport, base_url="http://svc") as client,
    ):
        assert (await client.get("/healthz")).status_code == 200
        for n in range(20):
            await producer.publish(cat.v2(n=n, label="x"), correlation_id=f"flow-{n % 3}")
        await wait_for(lambda: service.lag() > 0, what="lag")
        await wait_for(lambda: not service.healthy(), timeout=20, what="the stall")
        assert (await client.get("/healthz")).status_code == 503
        text = (await client.get("/metrics")).text
        group = f'messaging_consumer_group_name="{service.name}"'
        healthy = [line for line in text.splitlines() if line.startswith("choreo_consumer_healthy")]
        assert any(group in line and line.endswith(" 0.0") for line in healthy), healthy
        assert "choreo_consumer_lag{" in text
        release.set()
        await wait_for(lambda: service.stats.handled == 20, what="the backlog")
        await wait_for(lambda: service.lag() == 0, what="the commits")
        assert (await client.get("/healthz")).status_code == 200
        assert service.stats.handled == 20
