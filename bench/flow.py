"""A 5-hop flow's end-to-end latency: five handler processes in a chain, no database.

Run ``python -m bench.flow`` (``--json`` for machine-readable output,
``--engine tansu|kafka|both``: the embedded broker, the rig's Apache Kafka, or
one after the other). Per engine, one run starts the broker and five services,
each in its own process: stage
``i`` handles ``flow.step<i>`` and publishes ``flow.step<i+1>`` (inheriting the
flow, as every choreokit handler does). A driver starts flows at a steady
``--rate`` for ``--seconds`` and a plain aiokafka consumer on the last topic
notes when each flow's final event arrives. The latency of a flow is that
arrival minus the moment the driver published its first event: five handler
hops, each a consume, a handler, a publish acknowledged by the broker and an
offset commit. The DESIGN's target is p99 <= 50 ms.

In the same run, on the same broker, the **raw chain** is the limit to compare
with: five plain aiokafka processes (consume, ``json.loads`` + ``json.dumps``,
send with acks=all, await the ack, commit), on topics of their own created with
the same partition count and replication as choreokit's, driven and timed the
same way. No choreokit in its hops.
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
ENGINES = ("tansu", "kafka")
SCENARIOS = ("choreokit", "aiokafka")
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


def _raw_topic(index: int) -> str:
    return f"raw.step{index}"


def _client_settings(bootstrap: str) -> tuple[int, int, int]:
    """Partitions, replication and fetch wait (ms) that choreokit's clients use here."""
    from choreokit.events import KafkaSettings

    settings = KafkaSettings(bootstrap=bootstrap)
    wait = int(settings.timing("fetch_max_wait").total_seconds() * 1000)
    return settings.topic_partitions, settings.topic_replication, wait


async def _create_raw_topics(bootstrap: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    partitions, replication, _ = _client_settings(bootstrap)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [_raw_topic(i) for i in range(HOPS + 1) if _raw_topic(i) not in existing]
        if wanted:
            await admin.create_topics([NewTopic(t, partitions, replication) for t in wanted])
    finally:
        await admin.close()


async def _raw_stage(index: int, bootstrap: str, ready: Path, idempotent: bool) -> None:
    """Plain aiokafka: consume raw step ``index``, publish raw step ``index + 1``, commit."""
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


async def _drive(
    bootstrap: str, rate: float, seconds: float, scenario: str, idempotent: bool
) -> list[float]:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    from choreokit.events import KafkaSettings, Service

    models = _models()
    first, last = models[0], models[-1]
    _, _, fetch_wait = _client_settings(bootstrap)
    final = last.event_info().topic if scenario == "choreokit" else _raw_topic(HOPS)
    consumer = AIOKafkaConsumer(
        final,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="latest",
        fetch_max_wait_ms=fetch_wait,
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

    async def drive(publish: Any) -> None:
        collecting = asyncio.ensure_future(collect())
        began = time.perf_counter()
        for n in range(count):
            await asyncio.sleep(max(0.0, began + n / rate - time.perf_counter()))
            started[n] = time.perf_counter()
            await publish(n)
        try:
            await asyncio.wait_for(collecting, timeout=60)
        finally:
            await consumer.stop()

    if scenario == "choreokit":
        driver = Service(
            "flow-driver",
            registry=first.__event_registry__,
            settings=KafkaSettings(bootstrap=bootstrap),
            publishes=[first],
        )
        async with driver:

            async def publish_event(n: int) -> None:
                await driver.publish(first(flow=n))

            await drive(publish_event)
    else:
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks="all", linger_ms=0, enable_idempotence=idempotent
        )
        await producer.start()
        try:

            async def publish_raw(n: int) -> None:
                value = json.dumps({"flow": n}).encode()
                await (await producer.send(_raw_topic(0), value, key=str(n).encode()))

            await drive(publish_raw)
        finally:
            await producer.stop()
    return sorted((arrived[n] - started[n]) * 1000 for n in started)


def _percentile(values: list[float], q: float) -> float:
    rank = max(1, round(q / 100 * len(values) + 0.5))
    return values[min(rank, len(values)) - 1]


def _result(latencies: list[float], rate: float) -> dict[str, Any]:
    return {
        "flows": len(latencies),
        "rate": rate,
        "p50_ms": round(_percentile(latencies, 50), 1),
        "p95_ms": round(_percentile(latencies, 95), 1),
        "p99_ms": round(_percentile(latencies, 99), 1),
        "max_ms": round(latencies[-1], 1),
    }


def _run_scenario(
    scenario: str, engine: str, bootstrap: str, args: argparse.Namespace, tmp: Path
) -> dict[str, Any]:
    """Start the five stages of ``scenario``, drive and time the flows, stop the stages."""
    idempotent = engine == "kafka"  # what choreokit's idempotence=auto resolves to on each
    if scenario == "aiokafka":
        asyncio.run(_create_raw_topics(bootstrap))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "CHOREO_"))}
    stages = []
    for i in range(HOPS):
        ready = tmp / f"{engine}-{scenario}-stage{i}"
        command = [sys.executable, "-m", "bench.flow", "--stage", str(i)]
        command += ["--bootstrap", bootstrap, "--ready", str(ready), "--scenario", scenario]
        if idempotent:
            command.append("--idempotent")
        stages.append(
            (ready, subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.DEVNULL))
        )
    try:
        deadline = time.monotonic() + 90
        while not all(ready.exists() for ready, _ in stages):
            if time.monotonic() > deadline:
                raise SystemExit(f"the {scenario} stages on {engine} did not start within 90 s")
            if any(process.poll() is not None for _, process in stages):
                raise SystemExit(f"a {scenario} stage on {engine} exited at start")
            time.sleep(0.05)
        latencies = asyncio.run(_drive(bootstrap, args.rate, args.seconds, scenario, idempotent))
    finally:
        for _, process in stages:
            process.terminate()
        for _, process in stages:
            process.wait(timeout=30)
    return _result(latencies, args.rate)


def _run_engine(engine: str, args: argparse.Namespace) -> dict[str, Any]:
    from choreokit.services.runtime import EmbeddedBroker, KafkaCluster, free_port

    with tempfile.TemporaryDirectory() as tmp:
        broker: EmbeddedBroker | KafkaCluster
        if engine == "tansu":
            broker = EmbeddedBroker(port=free_port())
        else:
            broker = KafkaCluster(1, directory=Path(tmp) / "kafka")
        broker.start()
        try:
            return {
                scenario: _run_scenario(scenario, engine, broker.bootstrap, args, Path(tmp))
                for scenario in args.scenarios
            }
        finally:
            if isinstance(broker, KafkaCluster):
                broker.close()
            else:
                broker.stop()


def main() -> None:
    """Run the benchmark (or, with ``--stage``, one stage of it)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=100.0, help="flows per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="per engine and scenario")
    parser.add_argument("--engine", choices=[*ENGINES, "both"], default="tansu")
    parser.add_argument(
        "--only", dest="scenarios", nargs="+", choices=SCENARIOS, default=list(SCENARIOS)
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--stage", type=int, help=argparse.SUPPRESS)
    parser.add_argument(
        "--scenario", choices=SCENARIOS, default="choreokit", help=argparse.SUPPRESS
    )
    parser.add_argument("--idempotent", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--bootstrap", help=argparse.SUPPRESS)
    parser.add_argument("--ready", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage is not None:
        if args.scenario == "choreokit":
            asyncio.run(_stage(args.stage, args.bootstrap, args.ready))
        else:
            asyncio.run(_raw_stage(args.stage, args.bootstrap, args.ready, args.idempotent))
        return

    engines = list(ENGINES) if args.engine == "both" else [args.engine]
    load_before = [round(x, 2) for x in os.getloadavg()]
    results = {engine: _run_engine(engine, args) for engine in engines}
    report = {
        "hops": HOPS,
        "rate": args.rate,
        "seconds": args.seconds,
        "engines": results,
        "target_p99_ms": 50,
        "machine": (
            f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
        ),
        "load_average_before": load_before,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{HOPS}-hop flow at {args.rate:g} flows/s for {args.seconds:g} s (target p99 <= 50 ms)")
    for engine, scenarios in results.items():
        for scenario, r in scenarios.items():
            print(
                f"  {engine:<6} {scenario:<10} {r['flows']:>6} flows: p50 {r['p50_ms']} ms, "
                f"p95 {r['p95_ms']} ms, p99 {r['p99_ms']} ms, max {r['max_ms']} ms"
            )
    print(f"  load average before {load_before}, after {report['load_average_after']}")


if __name__ == "__main__":
    main()
