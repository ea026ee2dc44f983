"""One trace across three service processes on the real broker, exported over OTLP.

Three processes (``tests.integration.tracing_hop``) form a chain
``alpha: t0 -> t1``, ``beta: t1 -> t2``, ``gamma: t2``; each is configured
through ``choreokit.tracing.configure`` from the environment and exports to a real OTLP
receiver process. The flow starts with a record produced without trace context.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from choreokit.events import Envelope, KafkaSettings, encode_headers
from choreokit.tracing import flow_label
from tests.integration.kafka_io import produce_raw, read_topic
from tests.integration.otlp import ROOT, Receiver, otlp_receiver
from tests.support import unique, wait_until

pytestmark = pytest.mark.engines("tansu", "kafka")

SECRET = "payload-marker-c41d"


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    with otlp_receiver(tmp_path) as running:
        yield running


class Chain:
    """The three hop processes, their topics and their logs."""

    def __init__(self, kafka: KafkaSettings, receiver: Receiver, tmp: Path) -> None:
        base = unique("trace")
        self.topics = [f"{base}.t0", f"{base}.t1", f"{base}.t2"]
        self.names = [unique("alpha-"), unique("beta-"), unique("gamma-")]
        self.bootstrap = kafka.bootstrap
        self.receiver = receiver
        self.tmp = tmp
        self.processes: list[tuple[str, subprocess.Popen[bytes], Path, Path]] = []

    def start(
        self, *, beta_env: dict[str, str] | None = None, env: dict[str, str] | None = None
    ) -> None:
        hops = [
            [
                "--source", self.topics[0], "--source-type", "chain.started",
                "--target", self.topics[1], "--target-type", "chain.continued",
            ],
            [
                "--source", self.topics[1], "--source-type", "chain.continued",
                "--target", self.topics[2], "--target-type", "chain.finished",
            ],
            ["--source", self.topics[2], "--source-type", "chain.finished"],
        ]  # fmt: skip
        extra = env
        for index, (name, args) in enumerate(zip(self.names, hops, strict=True)):
            env = {
                **os.environ,
                "CHOREO_KAFKA_BOOTSTRAP": self.bootstrap,
                "CHOREO_LOG_FORMAT": "json",
                "OTEL_EXPORTER_OTLP_ENDPOINT": self.receiver.grpc_endpoint,
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                "OTEL_BSP_SCHEDULE_DELAY": "100",
            }
            for key in (
                "OTEL_SDK_DISABLED",
                "OTEL_SERVICE_NAME",
                "OTEL_TRACES_SAMPLER",
                "OTEL_PROPAGATORS",
            ):
                env.pop(key, None)
            env.update(extra or {})
            if index == 1 and beta_env:
                env.update(beta_env)
            out, err = self.tmp / f"{name}.out", self.tmp / f"{name}.log"
            process = subprocess.Popen(
                [sys.executable, "-m", "tests.integration.tracing_hop", "--name", name, *args],
                cwd=ROOT,
                env=env,
                stdout=out.open("wb"),
                stderr=err.open("wb"),
            )
            self.processes.append((name, process, out, err))
        for name, process, out, err in self.processes:
            wait_until(started(process, out), timeout=60, what=f"{name} to start")
            assert process.poll() is None, err.read_text()

    def stop(self) -> None:
        for _, process, _, _ in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for name, process, _, err in self.processes:
            assert process.wait(timeout=30) == 0, f"{name} failed:\n{err.read_text()}"

    def kill(self) -> None:
        for _, process, _, _ in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait()

    def logs(self, index: int) -> list[dict[str, Any]]:
        text = self.processes[index][3].read_text()
        return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def started(process: subprocess.Popen[bytes], out: Path) -> Callable[[], bool]:
    return lambda: "ready" in out.read_text() or process.poll() is not None


@pytest.fixture
def chain(kafka: KafkaSettings, receiver: Receiver, tmp_path: Path) -> Iterator[Chain]:
    running = Chain(kafka, receiver, tmp_path)
    try:
        yield running
    finally:
        running.kill()


async def start_flow(
    chain: Chain, key: bytes, headers: list[tuple[str, bytes]] | None = None
) -> Envelope:
    """Produce the first record as a foreign system would: no trace context, its own key.

    ``headers`` are added as they are (a foreign system's trace context).
    """
    envelope = Envelope(
        id=unique("origin-"),
        source="/tests/origin",
        type="chain.started",
        dataversion=1,
        time=datetime.now(UTC),
        correlation_id=unique("flow-"),
    )
    value = json.dumps({"marker": SECRET}).encode()
    record = (key, value, encode_headers(envelope) + (headers or []))
    await produce_raw(chain.bootstrap, chain.topics[0], [record])
    return envelope


def one(spans: list[dict[str, Any]], service: str, name: str) -> dict[str, Any]:
    found = [s for s in spans if s["service_name"] == service and s["name"] == name]
    assert len(found) == 1, f"{service} {name}: {found}"
    return found[0]


def assert_no_payload_or_key(spans: list[dict[str, Any]], key: bytes) -> None:
    for span in spans:
        text = json.dumps([span["attributes"], span["events"], span["status"]])
        assert SECRET not in text, span
        assert key.decode() not in text, span
        assert "messaging.kafka.message.key" not in span["attributes"]


async def test_one_trace_runs_through_three_service_processes(
    chain: Chain, receiver: Receiver
) -> None:
    chain.start()
    key = unique("origin-key-").encode()
    origin = await start_flow(chain, key)
    alpha, beta, gamma = chain.names
    t0, t1, t2 = chain.topics

    wait_until(
        lambda: any(s["service_name"] == gamma for s in receiver.spans()),
        timeout=60,
        what="gamma's span at the receiver",
    )
    chain.stop()  # flushes every process's remaining spans
    spans = [s for s in receiver.spans() if s["service_name"] in chain.names]
    assert len(spans) == 5, [(s["service_name"], s["name"]) for s in spans]

    alpha_process = one(spans, alpha, f"process {t0}")
    alpha_send = one(spans, alpha, f"send {t1}")
    beta_process = one(spans, beta, f"process {t1}")
    beta_send = one(spans, beta, f"send {t2}")
    gamma_process = one(spans, gamma, f"process {t2}")

    assert len({s["trace_id"] for s in spans}) == 1
    assert alpha_process["parent_span_id"] is None  # the record came without trace context
    assert alpha_send["parent_span_id"] == alpha_process["span_id"]
    assert beta_process["parent_span_id"] == alpha_send["span_id"]
    assert beta_send["parent_span_id"] == beta_process["span_id"]
    assert gamma_process["parent_span_id"] == beta_send["span_id"]
    kinds = [s["kind"] for s in (alpha_send, beta_process, beta_send, gamma_process)]
    assert kinds == ["PRODUCER", "CONSUMER", "PRODUCER", "CONSUMER"]

    [r1] = await read_topic(chain.bootstrap, t1, 1)
    [r2] = await read_topic(chain.bootstrap, t2, 1)
    ce_id = {r.topic: dict(r.headers)["ce_id"].decode() for r in (r1, r2)}
    flow = flow_label(origin.correlation_id)  # spans name a flow by its label
    assert alpha_process["attributes"] == {
        "messaging.system": "kafka",
        "messaging.operation.name": "process",
        "messaging.operation.type": "process",
        "messaging.destination.name": t0,
        "messaging.destination.partition.id": "0",
        "messaging.kafka.offset": 0,
        "messaging.consumer.group.name": alpha,
        "messaging.message.id": origin.id,
        "messaging.message.conversation_id": flow,
        "cloudevents.event_id": origin.id,
        "cloudevents.event_source": "/tests/origin",
        "cloudevents.event_type": "chain.started",
        "cloudevents.event_spec_version": "1.0",
    }
    assert beta_send["attributes"] == {
        "messaging.system": "kafka",
        "messaging.operation.name": "send",
        "messaging.operation.type": "send",
        "messaging.destination.name": t2,
        "messaging.destination.partition.id": str(r2.partition),
        "messaging.kafka.offset": r2.offset,
        "messaging.message.id": ce_id[t2],
        "messaging.message.conversation_id": flow,
        "cloudevents.event_id": ce_id[t2],
        "cloudevents.event_source": f"/services/{beta}",
        "cloudevents.event_type": "chain.finished",
        "cloudevents.event_spec_version": "1.0",
    }
    assert gamma_process["attributes"]["messaging.consumer.group.name"] == gamma
    assert gamma_process["attributes"]["messaging.message.id"] == ce_id[t2]
    assert beta_process["attributes"]["messaging.message.id"] == ce_id[t1]
    assert all(s["attributes"]["messaging.message.conversation_id"] == flow for s in spans)
    assert all(s["scope"] == "choreokit" for s in spans)
    assert_no_payload_or_key(spans, key)

    # The record on t2 carries beta's send span as its trace context.
    traceparent = dict(r2.headers)["traceparent"].decode()
    assert traceparent.split("-")[1:3] == [beta_send["trace_id"], beta_send["span_id"]]

    # Log lines of the handler name the trace, its span and the flow.
    [handled] = [line for line in chain.logs(2) if line["message"].startswith("handled")]
    assert handled["service"] == gamma
    assert handled["trace_id"] == gamma_process["trace_id"]
    assert handled["span_id"] == gamma_process["span_id"]
    assert handled["correlation_id"] == flow


async def test_an_untraced_service_in_the_middle_keeps_the_trace_whole(
    chain: Chain, receiver: Receiver
) -> None:
    chain.start(beta_env={"OTEL_SDK_DISABLED": "true"})
    key = unique("origin-key-").encode()
    origin = await start_flow(chain, key)
    alpha, beta, gamma = chain.names
    _, t1, t2 = chain.topics

    wait_until(
        lambda: any(s["service_name"] == gamma for s in receiver.spans()),
        timeout=60,
        what="gamma's span at the receiver",
    )
    chain.stop()
    spans = [s for s in receiver.spans() if s["service_name"] in chain.names]
    assert not [s for s in spans if s["service_name"] == beta]
    alpha_send = one(spans, alpha, f"send {t1}")
    gamma_process = one(spans, gamma, f"process {t2}")
    assert gamma_process["trace_id"] == alpha_send["trace_id"]
    assert gamma_process["parent_span_id"] == alpha_send["span_id"]
    assert_no_payload_or_key(spans, key)

    # Beta's log line still names the trace and the flow it handled.
    [handled] = [line for line in chain.logs(1) if line["message"].startswith("handled")]
    assert handled["trace_id"] == alpha_send["trace_id"]
    assert handled["correlation_id"] == flow_label(origin.correlation_id)


B3_TRACE = "80f198ee56343ba864fe8b2a57d3eff7"
B3_SPAN = "e457b5a2e4d86bd1"


@pytest.mark.parametrize("beta", ["traced", "untraced"])
async def test_otel_propagators_b3_and_baggage_cross_two_hops(
    chain: Chain, receiver: Receiver, beta: str
) -> None:
    """A b3 trace and a W3C baggage entry from a foreign producer reach the third service.

    Every process runs with ``OTEL_PROPAGATORS=b3,baggage``; the middle one is
    traced (its spans join the b3 trace) or not (it only relays the context).
    """
    chain.start(
        env={"OTEL_PROPAGATORS": "b3,baggage"},
        beta_env={"OTEL_SDK_DISABLED": "true"} if beta == "untraced" else None,
    )
    key = unique("origin-key-").encode()
    foreign = [("b3", f"{B3_TRACE}-{B3_SPAN}-1".encode()), ("baggage", b"tenant=acme")]
    await start_flow(chain, key, foreign)
    alpha, beta_name, gamma = chain.names
    t0, t1, t2 = chain.topics

    wait_until(
        lambda: any(s["service_name"] == gamma for s in receiver.spans()),
        timeout=60,
        what="gamma's span at the receiver",
    )
    chain.stop()
    spans = [s for s in receiver.spans() if s["service_name"] in chain.names]
    assert {s["trace_id"] for s in spans} == {B3_TRACE}
    assert one(spans, alpha, f"process {t0}")["parent_span_id"] == B3_SPAN
    upstream = (
        one(spans, beta_name, f"send {t2}") if beta == "traced" else one(spans, alpha, f"send {t1}")
    )
    assert one(spans, gamma, f"process {t2}")["parent_span_id"] == upstream["span_id"]

    for topic in (t1, t2):
        [record] = await read_topic(chain.bootstrap, topic, 1)
        headers = {k: (v or b"").decode() for k, v in record.headers}
        assert headers["baggage"] == "tenant=acme", topic
        assert headers["b3"].split("-")[0] == B3_TRACE, topic
        assert "traceparent" not in headers  # only what OTEL_PROPAGATORS names is written
    assert headers["b3"].split("-")[1] == upstream["span_id"]
