"""A 5-hop flow's end-to-end latency: five handler processes in a chain, no database.

Run ``python -m bench.flow`` (``--json`` for machine-readable output). One run
starts the embedded broker and five services, each in its own process: stage
``i`` handles ``flow.step<i>`` and publishes ``flow.step<i+1>`` (inheriting the
flow, as every choreokit handler does). A driver starts flows at a steady
``--rate`` for ``--seconds`` and a plain aiokafka consumer on the last topic
notes when each flow's final event arrives. The latency of a flow is that
arrival minus the moment the driver published its first event: five handler
hops, each a consume, a handler, a publish acknowledged by the broker and an
offset commit. The DESIGN's target is p99 <= 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HOPS = 5
ROOT = Path(__file__).resolve().parent.parent


def _models() -> list[Any]:
    from choreokit.events import Event, Registry

    registry = Registry()
    models = []
    for i in range(HOPS + 1):
        namespace = {"__annotations__": {"flow": "int"}, "__module__": __name__}
        models.append(
            type(
                f"Step{i}",
                (Event,),
                namespace,
                type=f"flow.step{i}",
                topic=f"flow.step{i}",
                registry=registry,
            )
        )
    return models


async def _stage(index: int, bootstrap: str, ready: Path) -> None:
    """Handle step ``index`` and publish step ``index + 1`` until SIGTERM."""
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
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with service:
        ready.write_text("ready")  # noqa: ASYNC240 - once, at start-up
        await stop.wait()


async def _drive(bootstrap: str, rate: float, seconds: float) -> list[float]:
    from aiokafka import AIOKafkaConsumer

    from choreokit.events import KafkaSettings, Service

    models = _models()
    first, last = models[0], models[-1]
    consumer = AIOKafkaConsumer(
        last.event_info().topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="latest",
        fetch_max_wait_ms=20,
    )
    await consumer.start()
    await consumer.seek_to_end()
    for tp in consumer.assignment():
        await consumer.position(tp)
    started: dict[int, float] = {}
    arrived: dict[int, float] = {}
    count = int(rate * seconds)

    async def collect() -> None:
        while len(arrived) < count:
            batch = await consumer.getmany(timeout_ms=100)
            now = time.perf_counter()
            for records in batch.values():
                for record in records:
                    arrived.setdefault(json.loads(record.value)["flow"], now)

    driver = Service(
        "flow-driver",
        registry=first.__event_registry__,
        settings=KafkaSettings(bootstrap=bootstrap),
        publishes=[first],
    )
    async with driver:
        collecting = asyncio.ensure_future(collect())
        began = time.perf_counter()
        for n in range(count):
            await asyncio.sleep(max(0.0, began + n / rate - time.perf_counter()))
            started[n] = time.perf_counter()
            await driver.publish(first(flow=n))
        try:
            await asyncio.wait_for(collecting, timeout=60)
        finally:
            await consumer.stop()
    return sorted((arrived[n] - started[n]) * 1000 for n in started)


def _percentile(values: list[float], q: float) -> float:
    rank = max(1, round(q / 100 * len(values) + 0.5))
    return values[min(rank, len(values)) - 1]


def main() -> None:
    """Run the benchmark (or, with ``--stage``, one stage of it)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=100.0, help="flows per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--stage", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--bootstrap", help=argparse.SUPPRESS)
    parser.add_argument("--ready", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage is not None:
        asyncio.run(_stage(args.stage, args.bootstrap, args.ready))
        return

    from choreokit.services.runtime import EmbeddedBroker, free_port

    with EmbeddedBroker(port=free_port()) as broker, tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        stages = []
        for i in range(HOPS):
            ready = Path(tmp) / f"stage{i}"
            stages.append(
                (
                    ready,
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "bench.flow",
                            "--stage",
                            str(i),
                            "--bootstrap",
                            broker.bootstrap,
                            "--ready",
                            str(ready),
                        ],
                        cwd=ROOT,
                        env=env,
                        stderr=subprocess.DEVNULL,
                    ),
                )
            )
        try:
            deadline = time.monotonic() + 60
            while not all(ready.exists() for ready, _ in stages):
                if time.monotonic() > deadline:
                    raise SystemExit("the stages did not start within 60 s")
                time.sleep(0.05)
            latencies = asyncio.run(_drive(broker.bootstrap, args.rate, args.seconds))
        finally:
            for _, process in stages:
                process.terminate()
            for _, process in stages:
                process.wait(timeout=30)
    result = {
        "hops": HOPS,
        "flows": len(latencies),
        "rate": args.rate,
        "p50_ms": round(_percentile(latencies, 50), 1),
        "p95_ms": round(_percentile(latencies, 95), 1),
        "p99_ms": round(_percentile(latencies, 99), 1),
        "max_ms": round(latencies[-1], 1),
        "target_p99_ms": 50,
        "machine": (
            f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
        ),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(
        f"{HOPS}-hop flow, {result['flows']} flows at {args.rate:g}/s: "
        f"p50 {result['p50_ms']} ms, p95 {result['p95_ms']} ms, p99 {result['p99_ms']} ms, "
        f"max {result['max_ms']} ms (target p99 <= 50 ms; load {result['load_average']})"
    )


if __name__ == "__main__":
    main()
