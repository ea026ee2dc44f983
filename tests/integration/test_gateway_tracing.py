"""Trace context at the edge: a trusted caller's trace continues, an untrusted one's is linked.

Checked where it matters: the ``traceparent`` that reaches Kafka, with an
in-process OpenTelemetry SDK recording the gateway's spans.
"""

from __future__ import annotations

import json

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from choreokit.events import KafkaSettings
from tests.integration.gateway_harness import (
    key,
    running_gateway,
    structured,
)
from tests.integration.kafka_io import all_records, headers_of
from tests.support import catalog

CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"
TRACEPARENT = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"


def parse(traceparent: str) -> tuple[str, str]:
    version, trace_id, span_id, flags = traceparent.split("-")
    assert version == "00"
    assert int(flags, 16) & 1  # sampled
    return trace_id, span_id


@pytest.mark.parametrize("mode", ["binary", "structured"])
async def test_a_trusted_callers_trace_continues_through_the_gateway(
    kafka: KafkaSettings, mode: str
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    cat = catalog()
    internal = key("internal", types=("item.*",), trusted=True)
    async with (
        running_gateway(
            kafka, registry=cat.registry, keys=[internal], tracer_provider=provider
        ) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as client,
    ):
        response = await post(client, internal.auth, mode, "t-1")
        assert response.status_code == 202, response.text

    [record] = await all_records(kafka.bootstrap, cat.topic)
    trace_id, parent_span = parse(headers_of(record)["traceparent"])
    assert trace_id == CALLER_TRACE
    [span] = exporter.get_finished_spans()
    assert span.parent is not None
    assert format(span.parent.span_id, "016x") == CALLER_SPAN
    assert format(span.context.trace_id, "032x") == CALLER_TRACE
    assert format(span.context.span_id, "016x") == parent_span  # the record names our span
    assert span.name == "POST /events"
    assert dict(span.attributes or {}) == {
        "cloudevents.event_id": "internal:t-1",
        "cloudevents.event_type": "item.added",
        "cloudevents.event_source": "/partners/x",
        "messaging.destination.name": cat.topic,
        "http.request.method": "POST",
        "http.route": "/events",
        "choreo.gateway.key_id": "internal",
        "choreo.gateway.trusted": True,
    }
    assert headers_of(record)["tracestate"] == "vendor=caller"


@pytest.mark.parametrize("mode", ["binary", "structured"])
async def test_an_untrusted_callers_trace_is_linked_not_joined(
    kafka: KafkaSettings, mode: str
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    cat = catalog()
    partner = key("partner", types=("item.*",))
    async with (
        running_gateway(
            kafka, registry=cat.registry, keys=[partner], tracer_provider=provider
        ) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as client,
    ):
        response = await post(client, partner.auth, mode, "u-1")
        assert response.status_code == 202, response.text

    [record] = await all_records(kafka.bootstrap, cat.topic)
    trace_id, parent_span = parse(headers_of(record)["traceparent"])
    assert trace_id != CALLER_TRACE
    assert "tracestate" not in headers_of(record)
    [span] = exporter.get_finished_spans()
    assert span.parent is None  # a new trace
    assert format(span.context.trace_id, "032x") == trace_id
    assert format(span.context.span_id, "016x") == parent_span
    [link] = span.links
    assert format(link.context.trace_id, "032x") == CALLER_TRACE
    assert format(link.context.span_id, "016x") == CALLER_SPAN


async def test_without_an_sdk_only_a_trusted_callers_context_passes(kafka: KafkaSettings) -> None:
    """With the API alone (no SDK configured), nothing is invented and nothing untrusted leaks."""
    cat = catalog()
    internal = key("internal", types=("item.*",), trusted=True)
    partner = key("partner", types=("item.*",))
    async with (
        running_gateway(kafka, registry=cat.registry, keys=[internal, partner]) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as client,
    ):
        assert (await post(client, internal.auth, "binary", "n-1")).status_code == 202
        assert (await post(client, partner.auth, "binary", "n-2")).status_code == 202

    by_id = {
        headers_of(r)["ce_id"]: headers_of(r) for r in await all_records(kafka.bootstrap, cat.topic)
    }
    assert by_id["internal:n-1"]["traceparent"] == TRACEPARENT
    assert "traceparent" not in by_id["partner:n-2"]


async def post(
    client: httpx.AsyncClient, auth: dict[str, str], mode: str, event_id: str
) -> httpx.Response:
    trace_headers = {"traceparent": TRACEPARENT, "tracestate": "vendor=caller"}
    if mode == "binary":
        return await client.post(
            "/events",
            headers={
                **auth,
                **trace_headers,
                "Content-Type": "application/json",
                "ce-specversion": "1.0",
                "ce-id": event_id,
                "ce-source": "/partners/x",
                "ce-type": "item.added",
                "ce-dataversion": "2",
            },
            content=b'{"n": 1, "label": "x"}',
        )
    doc = structured(
        "item.added",
        event_id,
        {"n": 1, "label": "x"},
        version=2,
        source="/partners/x",
        **trace_headers,
    )
    return await client.post(
        "/events",
        headers={**auth, "Content-Type": "application/cloudevents+json"},
        content=json.dumps(doc),
    )
