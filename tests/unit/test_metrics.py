"""The event layer's metrics in memory: names and attributes per the messaging conventions."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client import generate_latest

from choreokit.events import ConfigurationError, Event, PermanentError, Registry, Service
from choreokit.services.runtime.status import StatusSettings
from choreokit.testing import ServiceKit
from choreokit.tracing import EventMetrics, configure_metrics
from choreokit.tracing import _metrics as m

reg = Registry()


class Tick(Event, type="metrics.tick", version=1, topic="metrics.ticks", registry=reg):
    fail: bool = False


class Tock(Event, type="metrics.tock", version=1, topic="metrics.tocks", registry=reg):
    pass


def ticker(metrics: EventMetrics) -> Service:
    service = Service("ticker", registry=reg, publishes=[Tock])
    service.use(metrics)
    metrics.observe(service)

    @service.handler(Tick)
    async def tick(event: Tick, ctx: Any) -> None:
        if event.fail:
            raise PermanentError("no")
        await ctx.publish(Tock())

    return service


def points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    data = reader.get_metrics_data()
    assert data is not None
    out: dict[str, list[Any]] = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                out.setdefault(metric.name, []).extend(metric.data.data_points)
    return out


def test_the_instrument_names_are_the_conventions_where_they_name_one() -> None:
    from opentelemetry.semconv._incubating.metrics import messaging_metrics as conventions

    assert m.PROCESS_DURATION == conventions.MESSAGING_PROCESS_DURATION
    assert m.CONSUMED_MESSAGES == conventions.MESSAGING_CLIENT_CONSUMED_MESSAGES
    assert m.SENT_MESSAGES == conventions.MESSAGING_CLIENT_SENT_MESSAGES


async def test_handling_sending_and_dead_letters_are_measured_with_their_attributes() -> None:
    reader = InMemoryMetricReader()
    metrics = EventMetrics(MeterProvider(metric_readers=[reader]).get_meter("t"))
    async with ServiceKit(ticker(metrics)) as kit:
        await kit.deliver(Tick(), Tick())
        await kit.deliver(Tick(fail=True))
        await kit.deliver(Tock())  # no handler here: skipped
    found = points(reader)
    durations = {p.attributes.get("error.type"): p.count for p in found[m.PROCESS_DURATION]}
    assert durations == {None: 2, "choreokit.events.PermanentError": 1}
    (consumed,) = found[m.CONSUMED_MESSAGES]
    assert consumed.value == 3
    assert dict(consumed.attributes) == {
        "messaging.system": "kafka",
        "messaging.operation.name": "process",
        "messaging.destination.name": "metrics.ticks",
        "messaging.consumer.group.name": "ticker",
    }
    (sent,) = found[m.SENT_MESSAGES]
    assert (sent.value, sent.attributes["messaging.destination.name"]) == (2, "metrics.tocks")
    assert found[m.HANDLED][0].value == 2
    assert found[m.DEAD_LETTERED][0].value == 1
    assert found[m.RETRIES][0].value == 0
    (skipped,) = found[m.SKIPPED]
    assert (skipped.value, skipped.attributes["cloudevents.event_type"]) == (1, "metrics.tock")


async def test_the_prometheus_registry_holds_the_same_metrics_under_prometheus_names() -> None:
    metrics = configure_metrics("ticker", otlp=False)
    try:
        async with ServiceKit(ticker(metrics.middleware)) as kit:
            await kit.deliver(Tick())
        text = generate_latest(metrics.registry).decode()
    finally:
        metrics.shutdown()
    for name in (
        "messaging_process_duration_seconds_bucket",
        "messaging_client_consumed_messages_total",
        "messaging_client_sent_messages_total",
        "choreo_consumer_handled_total",
        "choreo_consumer_dead_lettered_total",
        "choreo_consumer_redelivered_batches_total",
        "choreo_consumer_commit_failures_total",
        "choreo_consumer_transactions_committed_total",
        "choreo_consumer_transactions_aborted_total",
    ):
        assert name in text, name
    assert 'le="0.005"' in text  # the conventions' advised buckets


def test_the_status_port_is_a_number_zero_or_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHOREO_METRICS_PORT", "off")
    assert StatusSettings.from_env().port is None
    monkeypatch.setenv("CHOREO_METRICS_PORT", "0")
    assert StatusSettings.from_env().port == 0
    monkeypatch.setenv("CHOREO_METRICS_PORT", "http")
    with pytest.raises(ConfigurationError, match="CHOREO_METRICS_PORT"):
        StatusSettings.from_env()
    monkeypatch.delenv("CHOREO_METRICS_PORT")
    assert StatusSettings.from_env().port == 9464


async def test_the_runtime_reports_each_prepared_service_and_shares_its_registry() -> None:
    from choreokit.services.runtime.app import Runtime

    metrics = configure_metrics("ticker", otlp=False)
    try:
        runtime = Runtime(name="ticker", middlewares=(metrics.middleware,), metrics=metrics)
        assert runtime.prometheus_registry() is metrics.registry
        service = runtime.prepare(Service("ticker", registry=reg, publishes=[Tock]))

        @service.handler(Tick)
        async def tick(event: Tick) -> None:
            pass

        async with ServiceKit(service) as kit:
            await kit.deliver(Tick())
        text = generate_latest(runtime.prometheus_registry()).decode()
    finally:
        metrics.shutdown()
    assert 'choreo_consumer_handled_total{messaging_consumer_group_name="ticker"' in text
    assert Runtime(name="x").prometheus_registry() is not metrics.registry
