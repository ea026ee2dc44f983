"""``flow``: a 5-hop chain's end-to-end latency at fixed arrival rates, against a raw chain.

Five choreokit services, each its own process: stage ``i`` handles
``flow.step<i>`` and publishes ``flow.step<i+1>``. Beside them, the **raw
chain**: five plain aiokafka processes (consume with a group, ``json.loads`` +
``json.dumps``, send with acks=all and linger 0, await the ack, commit) on
topics of their own with the same partitions, replication, fetch wait and
idempotence. Both chains run at once; a driver per chain starts flows at a
steady rate for a window, and a plain consumer on the last topic notes when
each flow's last event arrives. A flow's latency is that arrival minus the
moment its first event was published. The windows alternate between the
chains, rate by rate, ``repeat`` times.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from choreokit.services.bench._context import Context
from choreokit.services.bench._stats import cdf, percentile, summary

HOPS = 5
CHAINS = {"choreokit": "choreokit, 5 services", "aiokafka": "raw aiokafka chain (the limit)"}
TARGET_P99_MS = 50.0
DRAIN_TIMEOUT = 60.0


def _models() -> list[Any]:
    from choreokit.events import Event, Registry

    registry = Registry()
    return [
        type(
            f"Step{i}",
            (Event,),
            {"__annotations__": {"flow": "int"}, "__module__": __name__},
            type=f"flow.step{i}",
            topic=f"flow.step{i}",
            registry=registry,
        )
        for i in range(HOPS + 1)
    ]


def _raw_topic(index: int) -> str:
    return f"raw.step{index}"


def _client_settings(bootstrap: str) -> tuple[int, int, int]:
    """Partitions, replication and fetch wait (ms) that choreokit's clients use here."""
    from choreokit.events import KafkaSettings

    settings = KafkaSettings(bootstrap=bootstrap)
    wait = int(settings.timing("fetch_max_wait").total_seconds() * 1000)
    return settings.topic_partitions, settings.topic_replication, wait


# -- the orchestrating side ------------------------------------------------------------------


def run(ctx: Context) -> dict[str, Any]:
    """Start both chains, drive every (rate, repetition) window on each, stop them."""
    idempotent = ctx.engine == "kafka"  # what choreokit's idempotence=auto resolves to
    asyncio.run(_create_topics(ctx.bootstrap))
    stages: list[tuple[Path, subprocess.Popen[bytes]]] = []
    try:
        for chain in CHAINS:
            for i in range(HOPS):
                ready = ctx.workdir / f"flow-{chain}-{i}.ready"
                command = [sys.executable, "-m", "choreokit.services.bench._flow", chain, str(i)]
                command += [ctx.bootstrap, str(ready), "1" if idempotent else "0"]
                process = subprocess.Popen(command, env=ctx.child_env(), stderr=subprocess.DEVNULL)
                stages.append((ready, process))
        _wait_ready(stages)
        windows = asyncio.run(_drive_all(ctx, idempotent))
    finally:
        for _, process in stages:
            process.terminate()
        for _, process in stages:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
    variants: dict[str, Any] = {}
    for chain, label in CHAINS.items():
        points: list[dict[str, Any]] = []
        for rate in ctx.sizes.flow_rates:
            runs = windows[chain][rate]
            pooled = sorted(x for latencies in runs for x in latencies)
            points.append(
                {
                    "rate": rate,
                    "flows": len(pooled),
                    "metrics": {
                        f"p{q}_ms": summary([percentile(r, q) for r in runs if r])
                        for q in (50, 95, 99)
                    },
                    "cdf": cdf(pooled),
                }
            )
        under = [
            p["rate"]
            for p in points
            if p["metrics"]["p99_ms"]["median"] is not None
            and p["metrics"]["p99_ms"]["median"] < TARGET_P99_MS
        ]
        variants[chain] = {
            "label": label,
            "rates": points,
            "highest_rate_p99_under_50ms": max(under) if under else None,
        }
    return {"unit": "ms", "hops": HOPS, "window_s": ctx.sizes.flow_seconds, "variants": variants}


def _wait_ready(stages: list[tuple[Path, subprocess.Popen[bytes]]]) -> None:
    deadline = time.monotonic() + 120
    while not all(ready.exists() for ready, _ in stages):
        if time.monotonic() > deadline:
            raise RuntimeError("the flow stages did not start within 120 s")
        if any(process.poll() is not None for _, process in stages):
            raise RuntimeError("a flow stage exited at start")
        time.sleep(0.05)


async def _create_topics(bootstrap: str) -> None:
    from choreokit.events import KafkaSettings, ensure_topics

    await ensure_topics(
        KafkaSettings(bootstrap=bootstrap),
        [*(f"flow.step{i}" for i in range(HOPS + 1)), *(_raw_topic(i) for i in range(HOPS + 1))],
    )


class _Collector:
    """A plain consumer on a chain's last topic: when each flow arrived."""

    def __init__(self, bootstrap: str, topic: str, fetch_wait: int) -> None:
        from aiokafka import AIOKafkaConsumer

        self.arrived: dict[int, float] = {}
        self.wake = asyncio.Event()
        self._consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            group_id=None,
            auto_offset_reset="latest",
            fetch_max_wait_ms=fetch_wait,
        )
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._consumer.start()
        await self._consumer.seek_to_end()
        for tp in self._consumer.assignment():
            await self._consumer.position(tp)
        self._task = asyncio.create_task(self._collect())

    async def _collect(self) -> None:
        while True:
            batch = await self._consumer.getmany(timeout_ms=100)
            now = time.perf_counter()
            for records in batch.values():
                for record in records:
                    self.arrived.setdefault(json.loads(record.value)["flow"], now)
            if batch:
                self.wake.set()

    async def wait_for(self, flows: list[int]) -> None:
        deadline = time.monotonic() + DRAIN_TIMEOUT
        while not all(f in self.arrived for f in flows):
            if time.monotonic() > deadline:
                missing = sum(f not in self.arrived for f in flows)
                raise RuntimeError(f"{missing} of {len(flows)} flows did not arrive")
            self.wake.clear()
            await asyncio.wait_for(self.wake.wait(), DRAIN_TIMEOUT)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._consumer.stop()


async def _drive_all(ctx: Context, idempotent: bool) -> dict[str, dict[float, list[list[float]]]]:
    from aiokafka import AIOKafkaProducer

    from choreokit.events import KafkaSettings, Service

    models = _models()
    _, _, fetch_wait = _client_settings(ctx.bootstrap)
    driver = Service(
        "flow-driver",
        registry=models[0].__event_registry__,
        settings=KafkaSettings(bootstrap=ctx.bootstrap),
        publishes=[models[0]],
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=ctx.bootstrap, acks="all", linger_ms=0, enable_idempotence=idempotent
    )
    collectors = {
        "choreokit": _Collector(ctx.bootstrap, f"flow.step{HOPS}", fetch_wait),
        "aiokafka": _Collector(ctx.bootstrap, _raw_topic(HOPS), fetch_wait),
    }

    async def publish_event(n: int) -> None:
        await driver.publish(models[0](flow=n))

    async def publish_raw(n: int) -> None:
        await (await producer.send(_raw_topic(0), json.dumps({"flow": n}).encode(), key=b"%d" % n))

    publishers: dict[str, Callable[[int], Awaitable[None]]] = {
        "choreokit": publish_event,
        "aiokafka": publish_raw,
    }
    windows: dict[str, dict[float, list[list[float]]]] = {
        chain: {rate: [] for rate in ctx.sizes.flow_rates} for chain in CHAINS
    }
    async with driver:
        await producer.start()
        try:
            for collector in collectors.values():
                await collector.start()
            window = 0
            for rate in ctx.sizes.flow_rates:
                for rep in range(ctx.repeat):
                    for chain in CHAINS:
                        window += 1
                        latencies = await _window(
                            publishers[chain],
                            collectors[chain],
                            rate,
                            ctx.sizes.flow_seconds,
                            window,
                        )
                        windows[chain][rate].append(latencies)
                        ctx.log(
                            f"  flow {ctx.engine} {chain:9s} {rate:5g}/s rep {rep + 1}: "
                            f"p50 {percentile(latencies, 50):7.1f} ms "
                            f"p99 {percentile(latencies, 99):7.1f} ms"
                        )
        finally:
            for collector in collectors.values():
                await collector.stop()
            await producer.stop()
    return windows


async def _window(
    publish: Callable[[int], Awaitable[None]],
    collector: _Collector,
    rate: float,
    seconds: float,
    window: int,
) -> list[float]:
    """Start ``rate * seconds`` flows at a steady pace; their latencies in ms, sorted."""
    count = max(1, int(rate * seconds))
    flows = [window * 1_000_000 + n for n in range(count)]
    started: dict[int, float] = {}
    began = time.perf_counter()
    for n, flow in enumerate(flows):
        await asyncio.sleep(max(0.0, began + n / rate - time.perf_counter()))
        started[flow] = time.perf_counter()
        await publish(flow)
    await collector.wait_for(flows)
    return sorted((collector.arrived.pop(f) - started[f]) * 1000 for f in flows)


# -- the stages (each its own process) --------------------------------------------------------


async def _stage(index: int, bootstrap: str, ready: Path) -> None:
    from choreokit.events import HandlerContext, KafkaSettings, Service

    models = _models()
    source, target = models[index], models[index + 1]
    service = Service(
        f"flow-stage-{index}",
        registry=source.__event_registry__,
        settings=KafkaSettings(bootstrap=bootstrap),
        publishes=[target],
    )

    @service.handler(source)
    async def hop(event: Any, ctx: HandlerContext) -> None:
        await ctx.publish(target(flow=event.flow))

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with service:
        ready.write_text("ready")  # noqa: ASYNC240 - once, at start-up
        await stop.wait()


async def _raw_stage(index: int, bootstrap: str, ready: Path, idempotent: bool) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    _, _, fetch_wait = _client_settings(bootstrap)
    consumer = AIOKafkaConsumer(
        _raw_topic(index),
        bootstrap_servers=bootstrap,
        group_id=f"raw-stage-{index}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=fetch_wait,
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=0, enable_idempotence=idempotent
    )
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await producer.start()
    await consumer.start()
    try:
        while not consumer.assignment():
            await consumer.getmany(timeout_ms=100)
        ready.write_text("ready")  # noqa: ASYNC240 - once, at start-up
        target = _raw_topic(index + 1)
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=100, max_records=500)
            sends = [
                await producer.send(
                    target, json.dumps(json.loads(record.value)).encode(), key=record.key
                )
                for records in batch.values()
                for record in records
            ]
            if sends:
                await asyncio.gather(*sends)
                await consumer.commit()
    finally:
        await consumer.stop()
        await producer.stop()


def main() -> None:
    """One stage: ``CHAIN INDEX BOOTSTRAP READY_FILE IDEMPOTENT(0|1)``, until SIGTERM."""
    chain, index, bootstrap, ready, idempotent = sys.argv[1:6]
    if chain == "choreokit":
        asyncio.run(_stage(int(index), bootstrap, Path(ready)))
    else:
        asyncio.run(_raw_stage(int(index), bootstrap, Path(ready), idempotent == "1"))


if __name__ == "__main__":
    main()
