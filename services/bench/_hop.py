"""``hop``: one handler hop (consume from A, publish one event to B, commit), every way.

Each variant runs in its own worker process, started once per engine and given
one repetition at a time over stdin (the variants' repetitions interleave, so
a machine that slows down slows every variant alike). A repetition reads a
fresh, pre-filled 4-partition input topic with a fresh consumer group.

Throughput is records handled per second from the first handled record until
the broker acknowledged the last output (counted on ``AIOKafkaProducer.send``,
which every variant uses underneath); CPU is the worker's CPU time (all
threads, so the exporter's too) over the same window, per record.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any

from choreokit.services.bench._context import Context, skipped
from choreokit.services.bench._databases import fresh_database
from choreokit.services.bench._otlp_sink import Sink, running_sink
from choreokit.services.bench._stats import ratio, summary

PARTITIONS = 4
TIMEOUT = 120.0
_ANSWER = "bench-answer "
"""What starts a worker's answer line (a library may print to stdout too)."""


@dataclass(frozen=True)
class Variant:
    """One way of running the hop."""

    name: str
    label: str
    traced: float | None = None
    """Sampling ratio of a traced variant (``None``: untraced)."""

    inbox: str | None = None
    faststream: bool = False
    transactions: bool = False


VARIANTS = (
    Variant("aiokafka", "raw aiokafka (the limit)"),
    Variant("faststream", "bare FastStream", faststream=True),
    Variant("faststream-otel", "FastStream + its OpenTelemetry middleware", 1.0, faststream=True),
    Variant("choreokit", "choreokit, untraced"),
    Variant("choreokit-traced", "choreokit, traced 100 %", 1.0),
    Variant("choreokit-traced-10", "choreokit, traced 10 %", 0.1),
    Variant("choreokit-inbox-sqlite", "choreokit + inbox on SQLite", inbox="sqlite"),
    Variant("choreokit-inbox-postgresql", "choreokit + inbox on PostgreSQL", inbox="postgresql"),
    Variant("choreokit-txn", "choreokit + Kafka transactions", transactions=True),
)
RATIOS = (
    ("choreokit/aiokafka", "choreokit", "aiokafka"),
    ("choreokit/faststream", "choreokit", "faststream"),
    ("traced/untraced", "choreokit-traced", "choreokit"),
    ("traced/faststream-otel", "choreokit-traced", "faststream-otel"),
    ("traced-10/untraced", "choreokit-traced-10", "choreokit"),
    ("inbox-sqlite/untraced", "choreokit-inbox-sqlite", "choreokit"),
    ("inbox-postgresql/untraced", "choreokit-inbox-postgresql", "choreokit"),
    ("txn/untraced", "choreokit-txn", "choreokit"),
)


def transactions_supported() -> bool:
    """Whether the event layer can run a service's hops in Kafka transactions yet."""
    from choreokit.events import KafkaSettings

    return "transactions" in KafkaSettings.model_fields


def _unavailable(variant: Variant, ctx: Context) -> str | None:
    if variant.name == "choreokit-txn":
        if ctx.engine != "kafka":
            return "the embedded broker has no transactions"
        if not transactions_supported():
            return "KafkaSettings has no transactions setting yet (the txn work adds it)"
    if variant.inbox == "postgresql" and ctx.postgres_url is None:
        return "no PostgreSQL (set CHOREO_BENCH_POSTGRES_URL or CHOREO_TEST_POSTGRES_URL)"
    return None


# -- the orchestrating side ------------------------------------------------------------------


def run(ctx: Context) -> dict[str, Any]:
    """Measure every variant ``ctx.repeat`` times on ``ctx``'s broker; ratios of the medians."""
    variants: dict[str, Any] = {}
    runnable = []
    for variant in VARIANTS:
        reason = _unavailable(variant, ctx)
        if reason is None:
            runnable.append(variant)
        else:
            variants[variant.name] = {"label": variant.label, **skipped(reason)}
    return asyncio.run(_run(ctx, runnable, variants))


async def _run(ctx: Context, runnable: list[Variant], variants: dict[str, Any]) -> dict[str, Any]:
    sizes = ctx.sizes
    records = {
        v.name: sizes.hop_faststream_records
        if v.faststream
        else sizes.hop_inbox_records
        if v.inbox
        else sizes.hop_records
        for v in runnable
    }
    base = f"bench-hop-{uuid.uuid4().hex[:6]}"
    plan = [
        (rep, v, f"{base}.{v.name}.{rep}.in", f"{base}.{v.name}.{rep}.out")
        for rep in range(ctx.repeat)
        for v in runnable
    ]
    await _prefill(
        ctx.bootstrap, [(source, target, records[v.name]) for _, v, source, target in plan]
    )
    rates: dict[str, list[float]] = {v.name: [] for v in runnable}
    cpu: dict[str, list[float]] = {v.name: [] for v in runnable}
    spans: dict[str, list[int]] = {v.name: [] for v in runnable}
    async with contextlib.AsyncExitStack() as stack:
        inbox_urls = {
            backend: await stack.enter_async_context(
                fresh_database(backend, ctx.workdir, ctx.postgres_url)
            )
            for backend in {v.inbox for v in runnable if v.inbox}
        }
        sink = stack.enter_context(running_sink())
        workers = {v.name: _Worker(v, ctx, sink, inbox_urls.get(v.inbox or "")) for v in runnable}
        for worker in workers.values():
            stack.callback(worker.close)
        for rep, variant, source, target in plan:
            before = sink.count() if variant.traced else 0
            measured = workers[variant.name].measure(source, target, records[variant.name])
            rate = records[variant.name] / measured["seconds"]
            cpu_us = measured["cpu_seconds"] / records[variant.name] * 1e6
            rates[variant.name].append(rate)
            cpu[variant.name].append(cpu_us)
            if variant.traced:
                await asyncio.sleep(0)  # the exporter flushed before the worker answered
                spans[variant.name].append(sink.count() - before)
            ctx.log(
                f"  hop {ctx.engine} {variant.name:28s} rep {rep + 1}: {rate:9.0f} msgs/s "
                f"{cpu_us:7.1f} us CPU/msg"
            )
    for variant in runnable:
        entry: dict[str, Any] = {
            "label": variant.label,
            "records": records[variant.name],
            "metrics": {
                "rate": summary(rates[variant.name]),
                "cpu_us": summary(cpu[variant.name]),
            },
        }
        if variant.traced:
            entry["spans_received"] = spans[variant.name]
        variants[variant.name] = entry
    ratios = {name: ratio(_metric(variants, a), _metric(variants, b)) for name, a, b in RATIOS}
    return {
        "unit": "msgs/s",
        "variants": {v.name: variants[v.name] for v in VARIANTS},
        "ratios": ratios,
    }


def _metric(variants: dict[str, Any], name: str) -> dict[str, Any] | None:
    metrics = variants.get(name, {}).get("metrics")
    return metrics["rate"] if metrics else None


class _Worker:
    """One variant's worker process; :meth:`measure` runs one repetition in it."""

    def __init__(self, variant: Variant, ctx: Context, sink: Sink, inbox_url: str | None) -> None:
        env = ctx.child_env()
        if variant.traced is not None:
            env["OTEL_EXPORTER_OTLP_ENDPOINT"] = sink.endpoint
            env["OTEL_EXPORTER_OTLP_PROTOCOL"] = "grpc"
            sampled = variant.traced < 1
            env["OTEL_TRACES_SAMPLER"] = (
                "parentbased_traceidratio" if sampled else "parentbased_always_on"
            )
            env["OTEL_TRACES_SAMPLER_ARG"] = str(variant.traced)
        command = [sys.executable, "-m", "choreokit.services.bench._hop", variant.name]
        command += [ctx.bootstrap, inbox_url or "-"]
        self.variant = variant
        self._process = subprocess.Popen(
            command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

    def measure(self, source: str, target: str, records: int) -> dict[str, float]:
        stdin, stdout = self._pipes()
        stdin.write(json.dumps({"source": source, "target": target, "records": records}) + "\n")
        stdin.flush()
        while line := stdout.readline():
            if line.startswith(_ANSWER):
                answer: dict[str, float] = json.loads(line.removeprefix(_ANSWER))
                return answer
        code = self._process.wait(timeout=30)
        raise RuntimeError(f"the hop worker {self.variant.name} exited ({code})")

    def close(self) -> None:
        stdin, _ = self._pipes()
        with contextlib.suppress(OSError):
            stdin.close()
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def _pipes(self) -> tuple[IO[str], IO[str]]:
        assert self._process.stdin is not None
        assert self._process.stdout is not None
        return self._process.stdin, self._process.stdout


async def _prefill(bootstrap: str, topics: list[tuple[str, str, int]]) -> None:
    """Create every repetition's topics and fill each input with CloudEvents records."""
    from aiokafka import AIOKafkaProducer

    from choreokit.events import (
        Envelope,
        Idempotence,
        KafkaSettings,
        encode_headers,
        ensure_topics,
    )

    settings = KafkaSettings(
        bootstrap=bootstrap, topic_partitions=PARTITIONS, idempotence=Idempotence.OFF
    )
    await ensure_topics(settings, [t for source, target, _ in topics for t in (source, target)])
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        for source, _, records in topics:
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
                        source,
                        value=json.dumps({"n": n}).encode(),
                        key=eid.encode(),
                        headers=encode_headers(envelope),
                    )
                )
            await asyncio.gather(*futures)
    finally:
        await producer.stop()


# -- the worker side (its own process) --------------------------------------------------------


class _Meter:
    """Notes the first handled record, and when the last output is acknowledged."""

    current: _Meter | None = None

    def __init__(self, target: str, records: int) -> None:
        self.first = self.last = 0.0
        self.cpu_first = self.cpu_last = 0.0
        self.count = self.acked = 0
        self.done = asyncio.Event()
        self.target = target
        self.records = records

    def hit(self) -> None:
        if self.count == 0:
            self.first = time.perf_counter()
            self.cpu_first = time.process_time()
        self.count += 1

    def ack(self, future: asyncio.Future[Any]) -> None:
        if future.cancelled() or future.exception() is not None:
            return
        self.acked += 1
        if self.acked == self.records:
            self.last = time.perf_counter()
            self.cpu_last = time.process_time()
            self.done.set()


def _watch_sends() -> None:
    """Count acknowledgements on ``AIOKafkaProducer.send``, the one producer of every variant."""
    from aiokafka import AIOKafkaProducer

    original = AIOKafkaProducer.send

    async def send(self: Any, *args: Any, **kwargs: Any) -> Any:
        future = await original(self, *args, **kwargs)
        meter = _Meter.current
        if meter is not None and (kwargs.get("topic") or args[0]) == meter.target:
            future.add_done_callback(meter.ack)
        return future

    AIOKafkaProducer.send = send


Stop = Callable[[], Awaitable[None]]


async def _raw(bootstrap: str, source: str, target: str, meter: _Meter) -> Stop:
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
                    value = json.dumps({"n": json.loads(record.value)["n"]}).encode()
                    futures.append(
                        await producer.send(
                            target, value=value, key=record.key, headers=list(record.headers)
                        )
                    )
            if futures:
                await asyncio.gather(*futures)
                await consumer.commit()

    task = asyncio.create_task(loop())

    async def stop() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await consumer.stop()
        await producer.stop()

    return stop


async def _faststream(
    bootstrap: str, source: str, target: str, meter: _Meter, *, traced: bool
) -> Stop:
    from faststream.kafka import KafkaBroker

    middlewares: list[Any] = []
    provider: Any = None
    if traced:
        from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider = TracerProvider(resource=Resource.create({"service.name": "bench-faststream"}))
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        middlewares.append(KafkaTelemetryMiddleware(tracer_provider=provider))
    # Its own logger at WARNING: the per-message access log (sent at DEBUG) and the
    # partition assignments are filtered, not printed; the calls still happen, as by default.
    quiet = logging.getLogger("choreokit.bench.faststream")
    quiet.setLevel(logging.WARNING)
    broker = KafkaBroker(bootstrap, logger=quiet, log_level=logging.DEBUG, middlewares=middlewares)

    @broker.subscriber(
        source, group_id=f"bench-{uuid.uuid4().hex[:8]}", auto_offset_reset="earliest"
    )
    @broker.publisher(target)
    async def handle(body: dict[str, Any]) -> dict[str, Any]:
        meter.hit()
        return {"n": body["n"]}

    await broker.start()

    async def stop() -> None:
        await broker.stop()
        if provider is not None:
            provider.shutdown()

    return stop


async def _choreokit(  # noqa: PLR0917 - the worker's one call site passes them in order
    bootstrap: str, source: str, target: str, meter: _Meter, variant: Variant, inbox_url: str
) -> Stop:
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
    options: dict[str, Any] = {"bootstrap": bootstrap, "idempotence": Idempotence.OFF}
    if variant.transactions:
        # Through model_validate until this branch meets the transactions setting (see
        # transactions_supported): idempotence as the engine resolves it, each batch's
        # outputs and offsets in one transaction under the instance's own id.
        options = {
            "bootstrap": bootstrap,
            "idempotence": Idempotence.AUTO,
            "transactions": True,
            "transactional_id": name,
        }
    settings = KafkaSettings.model_validate(options)
    service = Service(name, registry=registry, settings=settings, publishes=[Reserved])
    telemetry = configure(name, set_global=False)
    assert telemetry.enabled is (variant.traced is not None), telemetry
    service.use(*telemetry.middlewares)
    engine: Any = None
    if variant.inbox:
        from choreokit.events.sql import Inbox, create_tables
        from choreokit.services.runtime.database import create_engine

        engine = create_engine(inbox_url)
        await create_tables(engine)
        service.use(Inbox(engine, consumer=name, registry=registry))

    @service.handler(Placed)
    async def hop(event: Placed, ctx: HandlerContext) -> None:
        meter.hit()
        await ctx.publish(Reserved(n=event.n))

    await service.start()

    async def stop() -> None:
        await service.stop()
        telemetry.shutdown()
        if engine is not None:
            await engine.dispose()

    return stop


async def _measure(
    variant: Variant, bootstrap: str, inbox_url: str, job: dict[str, Any]
) -> dict[str, float]:
    from choreokit.services.runtime.heap import freeze_startup_heap, thaw_heap

    meter = _Meter(job["target"], job["records"])
    _Meter.current = meter
    source, target = job["source"], job["target"]
    if variant.name == "aiokafka":
        stop = await _raw(bootstrap, source, target, meter)
    elif variant.faststream:
        stop = await _faststream(
            bootstrap, source, target, meter, traced=variant.traced is not None
        )
    else:
        stop = await _choreokit(bootstrap, source, target, meter, variant, inbox_url)
    # Every variant's start-up heap leaves the collector's scans, as `choreo run` does for a
    # service (ServiceApp.run); no record was handled yet (nothing ran since the start).
    freeze_startup_heap()
    try:
        await asyncio.wait_for(meter.done.wait(), TIMEOUT)
    except TimeoutError:
        raise SystemExit(
            f"{variant.name}: {meter.acked} of {meter.records} outputs acknowledged after "
            f"{TIMEOUT:g} s ({meter.count} handled)"
        ) from None
    finally:
        await stop()  # a traced variant's exporter flushes here, before the answer
        thaw_heap()
    return {"seconds": meter.last - meter.first, "cpu_seconds": meter.cpu_last - meter.cpu_first}


def main() -> None:
    """Worker: ``VARIANT BOOTSTRAP INBOX_URL|-``; one JSON job a line on stdin, one answer out."""
    name, bootstrap, inbox_url = sys.argv[1:4]
    variant = next(v for v in VARIANTS if v.name == name)
    if variant.traced is None:
        for key in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
            os.environ.pop(key, None)
    _watch_sends()
    answers, sys.stdout = sys.stdout, sys.stderr
    for line in sys.stdin:
        answer = asyncio.run(_measure(variant, bootstrap, inbox_url, json.loads(line)))
        print(_ANSWER + json.dumps(answer), file=answers, flush=True)


if __name__ == "__main__":
    main()
