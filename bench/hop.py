"""Handler hop and tracing overhead: one hop (consume from A, publish one event to B), six ways.

Run ``python -m bench.hop`` (``--json`` for machine-readable output). One run
starts the embedded broker and a local OTLP receiver process, pre-fills a fresh
input topic per scenario with CloudEvents records, and measures each scenario
in its own Python process:

* ``aiokafka``: raw aiokafka, ``getmany`` + ``send`` without awaiting each
  acknowledgement + gather + ``commit`` per batch; the handler parses and
  serialises the JSON payload.
* ``faststream``: a bare FastStream ``@broker.subscriber`` + ``@broker.publisher``
  with default settings (the group reads from the earliest offset; its
  per-message access log is sent at DEBUG so it does not flood the terminal).
* ``choreokit-bare``: an ``events.Service`` handler that publishes one event via
  ``ctx.publish``, no middleware at all.
* ``choreokit``: an ``events.Service`` handler that publishes one event via
  ``ctx.publish``, tracing off (the trace-context relay in place, as
  ``choreokit.tracing.configure`` gives it without an endpoint).
* ``choreokit-traced``: the same with tracing on, 100% sampled, exported over
  OTLP/gRPC to the receiver process (``choreokit.tracing.configure`` from the environment).
* ``choreokit-traced-10``: the same, ``parentbased_traceidratio`` at 10%.
* ``choreokit-txn``: ``choreokit`` with Kafka transactions on (each batch's outputs and
  offsets committed in one transaction; ``--engine kafka`` only, Tansu has none).

``--engine kafka`` runs the scenarios on a one-node Apache Kafka (the rig's,
``choreo broker --engine kafka``) instead of the embedded broker; its default
scenarios are ``choreokit`` and ``choreokit-txn``, to price exactly-once.

Throughput is records handled per second from the first handled record until
the broker acknowledged the last output (counted on ``AIOKafkaProducer.send``,
the same way in every scenario); CPU is the scenario process's CPU time (all
threads) over the same window. Every scenario uses 4 partitions, acks=all,
linger 0. Each scenario runs ``--rounds`` times, interleaved, and keeps its best
round. The traced scenarios also report how many spans reached the receiver (a
dropped span would flatter the number).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SCENARIOS = (
    "aiokafka",
    "faststream",
    "choreokit-bare",
    "choreokit",
    "choreokit-traced",
    "choreokit-traced-10",
    "choreokit-txn",
)
ENGINE_SCENARIOS = {
    "tansu": SCENARIOS[:-1],
    "kafka": ("choreokit", "choreokit-txn"),
}
PARTITIONS = 4
TIMEOUT = 60.0
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Result:
    """One scenario's measurement."""

    scenario: str
    records: int
    seconds: float
    rate: float
    cpu_us_per_record: float
    spans_expected: int | None = None
    spans_received: int | None = None


# -- the scenario side (runs in its own process) -------------------------------------------


class Meter:
    """Notes the first handled record, and when the last output is acknowledged.

    Acknowledgements are counted by wrapping ``AIOKafkaProducer.send`` (the one
    producer all five scenarios use underneath), the same way for each.
    """

    def __init__(self, target: str, records: int) -> None:
        self.first: float | None = None
        self.last: float | None = None
        self.cpu_first = self.cpu_last = 0.0
        self.count = 0
        self.acked = 0
        self.done = asyncio.Event()
        self._target = target
        self._records = records

    def hit(self) -> None:
        if self.first is None:
            self.first = time.perf_counter()
            self.cpu_first = time.process_time()
        self.count += 1

    def _ack(self, future: asyncio.Future[Any]) -> None:
        if future.cancelled() or future.exception() is not None:
            return
        self.acked += 1
        if self.acked == self._records:
            self.last = time.perf_counter()
            self.cpu_last = time.process_time()
            self.done.set()

    def watch_sends(self) -> None:
        from aiokafka import AIOKafkaProducer

        original = AIOKafkaProducer.send
        meter = self

        async def send(self: Any, *args: Any, **kwargs: Any) -> Any:
            future = await original(self, *args, **kwargs)
            if (kwargs["topic"] if "topic" in kwargs else args[0]) == meter._target:
                future.add_done_callback(meter._ack)
            return future

        AIOKafkaProducer.send = send

    async def wait(self) -> None:
        try:
            await asyncio.wait_for(self.done.wait(), TIMEOUT)
        except TimeoutError:
            raise SystemExit(
                f"{self._target}: {self.acked} of {self._records} outputs acknowledged after "
                f"{TIMEOUT}s ({self.count} handled)"
            ) from None


async def _raw_aiokafka(bootstrap: str, source: str, target: str, meter: Meter) -> Any:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=bootstrap,
        group_id=f"bench-{uuid.uuid4().hex[:8]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=500,
        fetch_max_wait_ms=20,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    await consumer.start()
    await producer.start()

    async def loop() -> None:
        while True:
            batch = await consumer.getmany(timeout_ms=100, max_records=500)
            futures = []
            for records in batch.values():
                for record in records:
                    meter.hit()
                    payload = json.loads(record.value)
                    value = json.dumps({"n": payload["n"]}).encode()
                    futures.append(
                        await producer.send(
                            target, value=value, key=record.key, headers=list(record.headers)
                        )
                    )
            if futures:
                await asyncio.gather(*futures)
                await consumer.commit()

    task = asyncio.create_task(loop())
    task.add_done_callback(_fail_loudly)

    async def stop() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await consumer.stop()
        await producer.stop()

    return stop


def _fail_loudly(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        print(f"consumer loop failed: {task.exception()!r}", file=sys.stderr)
        os._exit(1)


async def _faststream(bootstrap: str, source: str, target: str, meter: Meter) -> Any:
    import logging

    from faststream.kafka import KafkaBroker

    broker = KafkaBroker(bootstrap, log_level=logging.DEBUG)

    @broker.subscriber(
        source, group_id=f"bench-{uuid.uuid4().hex[:8]}", auto_offset_reset="earliest"
    )
    @broker.publisher(target)
    async def handle(body: dict[str, Any]) -> dict[str, Any]:
        meter.hit()
        return {"n": body["n"]}

    await broker.start()
    return broker.stop


async def _choreokit(
    bootstrap: str,
    source: str,
    target: str,
    meter: Meter,
    *,
    traced: bool,
    bare: bool = False,
    transactions: bool = False,
) -> Any:
    from choreokit.events import (
        Event,
        HandlerContext,
        Idempotence,
        KafkaSettings,
        Registry,
        Service,
    )
    from choreokit.tracing import configure

    registry = Registry()

    class Placed(Event, type="bench.placed", version=1, topic=source, registry=registry):
        n: int

    class Reserved(Event, type="bench.reserved", version=1, topic=target, registry=registry):
        n: int

    name = f"bench-{uuid.uuid4().hex[:8]}"
    settings = KafkaSettings(
        bootstrap=bootstrap,
        idempotence=Idempotence.AUTO if transactions else Idempotence.OFF,
        transactions=transactions,
        transactional_id=name if transactions else None,
    )
    service = Service(name, registry=registry, settings=settings, publishes=[Reserved])
    if not traced:
        for key in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
            os.environ.pop(key, None)
    telemetry = configure(name, set_global=False)
    assert telemetry.enabled is traced, telemetry
    if not bare:
        service.use(*telemetry.middlewares)

    @service.handler(Placed)
    async def hop(event: Placed, ctx: HandlerContext) -> None:
        meter.hit()
        await ctx.publish(Reserved(n=event.n))

    await service.start()

    async def stop() -> None:
        await service.stop()
        telemetry.shutdown()

    return stop


async def _measure(
    scenario: str, bootstrap: str, source: str, target: str, records: int
) -> dict[str, Any]:
    meter = Meter(target, records)
    meter.watch_sends()
    if scenario == "aiokafka":
        stop = await _raw_aiokafka(bootstrap, source, target, meter)
    elif scenario == "faststream":
        stop = await _faststream(bootstrap, source, target, meter)
    else:
        stop = await _choreokit(
            bootstrap,
            source,
            target,
            meter,
            traced=scenario.startswith("choreokit-traced"),
            bare=scenario == "choreokit-bare",
            transactions=scenario == "choreokit-txn",
        )
    try:
        await meter.wait()
    finally:
        await stop()
    assert meter.first is not None
    assert meter.last is not None
    return {
        "seconds": meter.last - meter.first,
        "cpu_seconds": meter.cpu_last - meter.cpu_first,
        "handled": meter.count,
    }


# -- the orchestrating side -----------------------------------------------------------------


async def _prefill(bootstrap: str, topics: list[str], records: int) -> None:
    from aiokafka import AIOKafkaProducer

    from choreokit.events import Envelope, Idempotence, KafkaSettings, encode_headers
    from choreokit.events._kafka import ensure_topics

    settings = KafkaSettings(
        bootstrap=bootstrap, topic_partitions=PARTITIONS, idempotence=Idempotence.OFF
    )
    await ensure_topics(settings, topics)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        for topic in topics:
            if topic.endswith(".out"):
                continue
            futures = []
            for n in range(records):
                eid = uuid.uuid4().hex
                envelope = Envelope(
                    id=eid,
                    source="/bench",
                    type="bench.placed",
                    dataversion=1,
                    time=datetime.now(UTC),
                    correlation_id=eid,
                )
                futures.append(
                    await producer.send(
                        topic,
                        value=json.dumps({"n": n}).encode(),
                        key=eid.encode(),
                        headers=encode_headers(envelope),
                    )
                )
            await asyncio.gather(*futures)
    finally:
        await producer.stop()


def _spans_received(http_port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/count", timeout=5) as answer:
        return int(answer.read())


def _machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "load_before": os.getloadavg()[0],
    }


def _scenario(
    s: str, bootstrap: str, topics: tuple[str, str], records: int, grpc_port: int
) -> tuple[float, float]:
    env = dict(os.environ)
    env.pop("OTEL_SDK_DISABLED", None)
    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{grpc_port}"
    env["OTEL_EXPORTER_OTLP_PROTOCOL"] = "grpc"
    env["OTEL_TRACES_SAMPLER"] = (
        "parentbased_traceidratio" if s == "choreokit-traced-10" else "parentbased_always_on"
    )
    env["OTEL_TRACES_SAMPLER_ARG"] = "0.1"
    command = [sys.executable, "-m", "bench.hop", "--scenario", s, "--bootstrap", bootstrap]
    command += ["--source", topics[0], "--target", topics[1], "--records", str(records)]
    out = subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    measured = json.loads(out.stdout.strip().splitlines()[-1])
    return float(measured["seconds"]), float(measured["cpu_seconds"])


def run(
    records: int,
    faststream_records: int,
    scenarios: tuple[str, ...],
    rounds: int,
    engine: str = "tansu",
) -> dict[str, Any]:
    """Run every scenario ``rounds`` times, interleaved; keep each one's best round."""
    from choreokit.services.runtime import EmbeddedBroker, KafkaCluster, free_port

    if engine == "tansu" and "choreokit-txn" in scenarios:
        raise SystemExit(
            "choreokit-txn needs --engine kafka: the embedded broker has no transactions"
        )
    machine = {**_machine(), "engine": engine}
    plan = {s: (faststream_records if s == "faststream" else records) for s in scenarios}
    results: dict[str, Result] = {}
    all_rates: dict[str, list[float]] = {s: [] for s in scenarios}
    with tempfile.TemporaryDirectory() as tmp:
        broker: EmbeddedBroker | KafkaCluster
        if engine == "kafka":
            broker = KafkaCluster(1, directory=Path(tmp) / "kafka")
        else:
            broker = EmbeddedBroker(port=free_port(), log=Path(tmp) / "tansu.log")
        broker.start()
        receiver = subprocess.Popen(
            [sys.executable, "-m", "tests.otlp_receiver", "--count-only"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert receiver.stdout is not None
            ready = receiver.stdout.readline().split()
            ports = dict(part.split("=") for part in ready[1:])
            grpc_port, http_port = int(ports["grpc"]), int(ports["http"])
            for round_ in range(rounds):
                base = f"bench{uuid.uuid4().hex[:6]}"
                topics = {s: (f"{base}.{s}.in", f"{base}.{s}.out") for s in scenarios}
                for s in scenarios:
                    asyncio.run(_prefill(broker.bootstrap, list(topics[s]), plan[s]))
                for s in scenarios:
                    before = _spans_received(http_port)
                    seconds, cpu_seconds = _scenario(
                        s, broker.bootstrap, topics[s], plan[s], grpc_port
                    )
                    rate = round(plan[s] / seconds, 1)
                    cpu_us = round(cpu_seconds / plan[s] * 1e6, 1)
                    all_rates[s].append(rate)
                    line = f"{s:22s} {rate:10.0f} msgs/s {cpu_us:8.1f} us CPU/msg"
                    print(f"  round {round_ + 1}: {line}", file=sys.stderr)
                    result = Result(s, plan[s], round(seconds, 3), rate, cpu_us)
                    if s.startswith("choreokit-traced"):
                        result.spans_expected = 2 * plan[s] if s == "choreokit-traced" else None
                        result.spans_received = _spans_received(http_port) - before
                    if s not in results or rate > results[s].rate:
                        results[s] = result
        finally:
            receiver.terminate()
            receiver.wait(timeout=10)
            if isinstance(broker, KafkaCluster):
                broker.close()
            else:
                broker.stop()
    rates = {s: r.rate for s, r in results.items()}
    cpu = {s: r.cpu_us_per_record for s, r in results.items()}

    def ratio(a: str, b: str) -> float | None:
        return round(rates[a] / rates[b], 2) if a in rates and b in rates else None

    def cpu_ratio(a: str, b: str) -> float | None:
        return round(cpu[b] / cpu[a], 2) if a in cpu and b in cpu and cpu[a] else None

    return {
        "machine": machine,
        "rounds": rounds,
        "results": [{**asdict(results[s]), "rounds": all_rates[s]} for s in scenarios],
        "ratios": {
            "choreokit/faststream": ratio("choreokit", "faststream"),
            "choreokit/aiokafka": ratio("choreokit", "aiokafka"),
            "traced/untraced": ratio("choreokit-traced", "choreokit"),
            "traced-10/untraced": ratio("choreokit-traced-10", "choreokit"),
            "untraced (relay)/bare": ratio("choreokit", "choreokit-bare"),
            "transactions/untraced": ratio("choreokit-txn", "choreokit"),
        },
        "cpu_ratios": {
            "untraced (relay)/bare": cpu_ratio("choreokit", "choreokit-bare"),
            "traced/untraced": cpu_ratio("choreokit-traced", "choreokit"),
            "traced-10/untraced": cpu_ratio("choreokit-traced-10", "choreokit"),
            "transactions/untraced": cpu_ratio("choreokit-txn", "choreokit"),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="Handler hop and tracing overhead benchmark.")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--records", type=int, default=20_000, help="records per scenario")
    parser.add_argument("--faststream-records", type=int, default=4_000)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds; best kept")
    parser.add_argument("--only", nargs="*", choices=SCENARIOS, help="run only these scenarios")
    parser.add_argument(
        "--engine", choices=tuple(ENGINE_SCENARIOS), default="tansu", help="the broker [tansu]"
    )
    parser.add_argument("--scenario", choices=SCENARIOS, help=argparse.SUPPRESS)
    parser.add_argument("--bootstrap", help=argparse.SUPPRESS)
    parser.add_argument("--source", help=argparse.SUPPRESS)
    parser.add_argument("--target", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.scenario:
        measured = asyncio.run(
            _measure(args.scenario, args.bootstrap, args.source, args.target, args.records)
        )
        print(json.dumps(measured))
        return
    scenarios = tuple(args.only or ENGINE_SCENARIOS[args.engine])
    report = run(args.records, args.faststream_records, scenarios, args.rounds, args.engine)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    for r in report["results"]:
        spans = f"  spans {r['spans_received']}" if r["spans_received"] is not None else ""
        print(
            f"{r['scenario']:22s} {r['rate']:10.0f} msgs/s {r['cpu_us_per_record']:8.1f} us CPU/msg"
            f"  (best of {r['rounds']}; {r['records']} in {r['seconds']}s){spans}"
        )
    for name, value in report["ratios"].items():
        if value is not None:
            print(f"{name:22s} {value}")
    for name, value in report["cpu_ratios"].items():
        if value is not None:
            print(f"{name + ' (CPU)':22s} {value}")


if __name__ == "__main__":
    main()
