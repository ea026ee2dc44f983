"""Spans leave the process over OTLP, and trace context arrives from systems in other languages."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, format_span_id, format_trace_id

from choreokit.events import Event, HandlerContext, KafkaSettings, Registry, Service
from choreokit.tracing import TracingMiddleware, configure, flow_label
from tests.integration.kafka_io import read_topic
from tests.integration.otlp import ROOT, Receiver, otlp_receiver
from tests.support import unique, wait_for, wait_until

INTEROP = ROOT / "tests" / "interop"


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    with otlp_receiver(tmp_path) as running:
        yield running


@pytest.fixture
def otel_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for key in list(os.environ):
        if key.startswith("OTEL_"):
            monkeypatch.delenv(key)
    return monkeypatch


def declare(topic: str, out_topic: str) -> tuple[Registry, type[Event], type[Event]]:
    registry = Registry()

    class Pinged(Event, type="probe.pinged", version=1, topic=topic, registry=registry):
        n: int

    class Ponged(Event, type="probe.ponged", version=1, topic=out_topic, registry=registry):
        n: int

    return registry, Pinged, Ponged


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
async def test_spans_reach_a_real_otlp_receiver_with_the_service_name(
    protocol: str, kafka: KafkaSettings, receiver: Receiver, otel_env: pytest.MonkeyPatch
) -> None:
    endpoint = receiver.grpc_endpoint if protocol == "grpc" else receiver.http_endpoint
    service_name = unique("exported-")
    otel_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    otel_env.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
    otel_env.setenv("OTEL_SERVICE_NAME", service_name)
    otel_env.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=test")
    otel_env.setenv("OTEL_BSP_SCHEDULE_DELAY", "600000")  # only the flush at shutdown sends them
    telemetry = configure("fallback-name", set_global=False)
    assert telemetry.enabled

    base = unique("export")
    registry, pinged, _ = declare(f"{base}.in", f"{base}.out")
    handled: list[int] = []
    service = Service(unique("exp"), registry=registry, settings=kafka, publishes=[pinged])
    service.use(*telemetry.middlewares)

    @service.handler(pinged)
    async def on_ping(event: Any) -> None:
        handled.append(event.n)

    async with service:
        await service.publish(pinged.model_validate({"n": 1}))
        await wait_for(lambda: handled == [1], what="the ping to be handled")
    telemetry.shutdown()  # flushes the batch processor

    def arrived() -> list[dict[str, Any]]:
        return [s for s in receiver.spans() if s["service_name"] == service_name]

    wait_until(lambda: len(arrived()) == 2, what=f"both spans over {protocol}")
    spans = arrived()
    assert {s["protocol"] for s in spans} == {protocol}
    assert {(s["kind"], s["name"]) for s in spans} == {
        ("PRODUCER", f"send {base}.in"),
        ("CONSUMER", f"process {base}.in"),
    }
    assert all(s["resource"]["deployment.environment.name"] == "test" for s in spans)
    assert all(s["schema_url"] == "https://opentelemetry.io/schemas/1.44.0" for s in spans)
    assert not [s for s in receiver.spans() if s["service_name"] == "fallback-name"]


async def test_trace_context_from_a_node_producer_is_continued_and_its_absence_starts_a_trace(
    kafka: KafkaSettings,
) -> None:
    """kafkajs publishes one record with a ``traceparent`` header and one without."""
    base = unique("node")
    registry, pinged, ponged = declare(f"{base}.in", f"{base}.out")
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    handled: list[int] = []
    service = Service(unique("node-"), registry=registry, settings=kafka, publishes=[ponged])
    service.use(TracingMiddleware(provider))

    @service.handler(pinged)
    async def on_ping(event: Any, ctx: HandlerContext) -> None:
        handled.append(event.n)
        await ctx.publish(ponged.model_validate({"n": event.n}))

    caller_trace, caller_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"

    def record(n: int, traced: bool) -> dict[str, Any]:
        headers = {
            "content-type": "application/json",
            "ce_specversion": "1.0",
            "ce_id": f"node-{base}-{n}",
            "ce_source": "/node/checkout",
            "ce_type": "probe.pinged",
            "ce_time": "2026-11-21T12:00:00Z",
        }
        if traced:
            headers["traceparent"] = f"00-{caller_trace}-{caller_span}-01"
            headers["tracestate"] = "checkout=1"
        return {"key": f"flow-{n}", "value": json.dumps({"n": n}), "headers": headers}

    async with service:  # creates the topics before the Node client writes to them
        node = await asyncio.create_subprocess_exec(
            "node",
            str(INTEROP / "tracing_producer.js"),
            kafka.bootstrap,
            f"{base}.in",
            json.dumps([record(1, traced=True), record(2, traced=False)]),
            cwd=INTEROP,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(node.communicate(), timeout=60)
        assert node.returncode == 0, err.decode()
        await wait_for(lambda: sorted(handled) == [1, 2], what="both Node records")
        outputs = await read_topic(kafka.bootstrap, f"{base}.out", 2)

    consumers = {
        dict(s.attributes or {})["messaging.message.id"]: s
        for s in exporter.get_finished_spans()
        if s.kind is SpanKind.CONSUMER
    }
    traced, fresh = consumers[f"node-{base}-1"], consumers[f"node-{base}-2"]
    traced_context, fresh_context = traced.get_span_context(), fresh.get_span_context()
    assert traced_context is not None
    assert fresh_context is not None
    assert traced.parent is not None
    assert traced.parent.is_remote
    assert format_trace_id(traced_context.trace_id) == caller_trace
    assert format_span_id(traced.parent.span_id) == caller_span
    assert traced_context.trace_state.get("checkout") == "1"
    assert fresh.parent is None
    assert format_trace_id(fresh_context.trace_id) != caller_trace
    assert dict(traced.attributes or {})["messaging.message.conversation_id"] == flow_label(
        f"node-{base}-1"  # no ce_correlationid: the event starts its own flow
    )

    # What the handler published continues each record's trace.
    by_flow = {r.key: dict(r.headers)["traceparent"].decode() for r in outputs}
    assert by_flow[f"node-{base}-1".encode()].split("-")[1] == caller_trace
    assert by_flow[f"node-{base}-2".encode()].split("-")[1] == format_trace_id(
        fresh_context.trace_id
    )
