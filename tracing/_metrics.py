"""The event layer's metrics: OpenTelemetry messaging metrics, exported to Prometheus too.

One set of OpenTelemetry instruments, named per the messaging semantic
conventions where they name something (``messaging.process.duration``,
``messaging.client.consumed.messages``, ``messaging.client.sent.messages``)
and ``choreo.consumer.*`` for what they do not (retries, dead letters, skips,
redelivered batches, commit failures, records parked in retry lanes, replays,
rebalances, pauses, lag, progress and health). A Prometheus reader turns them
into Prometheus text for ``/metrics`` (``messaging_process_duration_seconds``,
``choreo_consumer_dead_lettered_total``, ...); ``OTEL_METRICS_EXPORTER=otlp``
also pushes them to the OTLP endpoint. See docs/metrics.md.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import CallbackOptions, Meter, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import SERVICE_NAME, OTELResourceDetector, Resource
from prometheus_client import CollectorRegistry

from choreokit.events import Delivery, Middleware, Outbound, Service
from choreokit.tracing import _naming as names
from choreokit.tracing._hooks import Next, Send, SendFuture

logger = logging.getLogger("choreokit.metrics")

PROCESS_DURATION = "messaging.process.duration"
CONSUMED_MESSAGES = "messaging.client.consumed.messages"
SENT_MESSAGES = "messaging.client.sent.messages"
HANDLED = "choreo.consumer.handled"
RETRIES = "choreo.consumer.retries"
DEAD_LETTERED = "choreo.consumer.dead_lettered"
SKIPPED = "choreo.consumer.skipped"
REDELIVERED_BATCHES = "choreo.consumer.redelivered_batches"
COMMIT_FAILURES = "choreo.consumer.commit_failures"
LAG = "choreo.consumer.lag"
PARKED = "choreo.consumer.parked"
REPLAYS_HANDLED = "choreo.consumer.replays_handled"
REPLAYS_SKIPPED = "choreo.consumer.replays_skipped"
REBALANCES = "choreo.consumer.rebalances"
PAUSED = "choreo.consumer.paused"
TRANSACTIONS_COMMITTED = "choreo.consumer.transactions_committed"
TRANSACTIONS_ABORTED = "choreo.consumer.transactions_aborted"
PARKED_RECORDS = "choreo.consumer.parked_records"
SECONDS_SINCE_PROGRESS = "choreo.consumer.idle"
HEALTHY = "choreo.consumer.healthy"

DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)
"""The semantic conventions' advised buckets for messaging durations (seconds)."""

_Read = Callable[[Service], int]
_K = TypeVar("_K")
_GROUP = "messaging.consumer.group.name"
_EVENT_TYPE = "cloudevents.event_type"


class EventMetrics(Middleware):
    """Measures every handled record and every send; reads each observed service's counters.

    Give it to a service like any middleware and call :meth:`observe` with the
    service, so its consumer's counters (which also count records that never
    reach a handler: undecodable ones, skips) are reported too.

    Args:
        meter: Where the instruments live (``configure_metrics`` builds one).
    """

    def __init__(self, meter: Meter) -> None:
        self._meter = meter
        self._services: list[Service] = []
        self._duration = meter.create_histogram(
            PROCESS_DURATION, unit="s", description="Duration of handling one record."
        )
        # The two per-record counters count in plain integers here and are read on
        # collection: an SDK ``Counter.add`` per record (attribute hashing, a lock, a
        # measurement object) cost the gateway about 17 % of its CPU per batched event.
        self._consumed: dict[tuple[str, str], _Count] = {}
        self._sent: dict[str, _Count] = {}
        meter.create_observable_counter(
            CONSUMED_MESSAGES,
            callbacks=[partial(_observe_counts, self._consumed)],
            unit="{message}",
            description="Records a handler of this service received.",
        )
        meter.create_observable_counter(
            SENT_MESSAGES,
            callbacks=[partial(_observe_counts, self._sent)],
            unit="{message}",
            description="Events handed to the producer.",
        )
        counters = (
            (HANDLED, "Records whose handler succeeded.", _handled),
            (RETRIES, "Handler tries that failed and were tried again.", _retries),
            (DEAD_LETTERED, "Records sent to a dead-letter topic.", _dead_lettered),
            (REDELIVERED_BATCHES, "Batches to be read again.", _redelivered),
            (COMMIT_FAILURES, "Offset commits the group refused.", _commit_failures),
            (PARKED, "Records handed to their key's retry lane (the partition went on).", _parked),
            (REPLAYS_HANDLED, "Replayed dead letters this group handled.", _replays_handled),
            (REPLAYS_SKIPPED, "Replayed dead letters meant for another group.", _replays_skipped),
            (REBALANCES, "Partition revocations this member took part in.", _rebalances),
            (PAUSED, "Times a partition was paused: its retry lanes were full.", _paused),
            (
                TRANSACTIONS_COMMITTED,
                "Batches committed in a Kafka transaction (transactions on).",
                _transactions_committed,
            ),
            (
                TRANSACTIONS_ABORTED,
                "Batch transactions aborted; their batches are read again.",
                _transactions_aborted,
            ),
        )
        for name, description, read in counters:
            meter.create_observable_counter(
                name,
                callbacks=[partial(self._observe_counter, read)],
                unit="{record}" if name in _RECORD_COUNTERS else "1",
                description=description,
            )
        meter.create_observable_counter(
            SKIPPED,
            callbacks=[self._observe_skipped],
            unit="{record}",
            description="Records of types no handler here wants, by type.",
        )
        meter.create_observable_gauge(
            LAG,
            callbacks=[self._observe_lag],
            unit="{record}",
            description="Records behind the partition's end not done yet (retry lanes count).",
        )
        gauges: tuple[tuple[str, str, str, Callable[[Service], float]], ...] = (
            (PARKED_RECORDS, "{record}", "Records in retry lanes now.", _parked_now),
            (SECONDS_SINCE_PROGRESS, "s", "Seconds since a record was last done.", _idle),
            (HEALTHY, "1", "1 if the consumer makes progress (see /healthz).", _healthy),
        )
        for name, unit, description, value in gauges:
            meter.create_observable_gauge(
                name,
                callbacks=[partial(self._observe_gauge, value)],
                unit=unit,
                description=description,
            )

    def observe(self, service: Service) -> None:
        """Report ``service``'s consumer counters and lag."""
        if service not in self._services:
            self._services.append(service)

    async def on_delivery(self, delivery: Delivery, call_next: Next) -> None:
        """Time the handling of one record (every try and the hand-over of its outputs)."""
        key = (delivery.record.topic, delivery.group)
        consumed = self._consumed.get(key)
        if consumed is None:
            consumed = self._consumed[key] = _Count(
                {
                    names.MESSAGING_SYSTEM: names.KAFKA,
                    names.MESSAGING_OPERATION_NAME: names.PROCESS,
                    names.MESSAGING_DESTINATION_NAME: delivery.record.topic,
                    _GROUP: delivery.group,
                }
            )
        consumed.value += 1
        attributes = consumed.attributes
        started = time.perf_counter()
        try:
            await call_next(delivery)
        except BaseException as exc:
            failed = {**attributes, names.ERROR_TYPE: names.error_type(exc)}
            self._duration.record(time.perf_counter() - started, failed)
            raise
        self._duration.record(time.perf_counter() - started, attributes)

    async def on_publish(self, outbound: Outbound, send: Send) -> SendFuture:
        """Count one send."""
        sent = self._sent.get(outbound.topic)
        if sent is None:
            sent = self._sent[outbound.topic] = _Count(
                {
                    names.MESSAGING_SYSTEM: names.KAFKA,
                    names.MESSAGING_OPERATION_NAME: names.SEND,
                    names.MESSAGING_DESTINATION_NAME: outbound.topic,
                }
            )
        sent.value += 1
        return await send(outbound)

    def _observe_counter(self, read: _Read, _options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(read(s), {names.MESSAGING_SYSTEM: names.KAFKA, _GROUP: s.name})
            for s in self._services
        ]

    def _observe_gauge(
        self, read: Callable[[Service], float], _options: CallbackOptions
    ) -> Iterable[Observation]:
        return [
            Observation(read(s), {names.MESSAGING_SYSTEM: names.KAFKA, _GROUP: s.name})
            for s in self._services
        ]

    def _observe_skipped(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(
                count, {names.MESSAGING_SYSTEM: names.KAFKA, _GROUP: s.name, _EVENT_TYPE: t}
            )
            for s in self._services
            for t, count in s.stats.skipped.items()
        ]

    def _observe_lag(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(
                lag,
                {
                    names.MESSAGING_SYSTEM: names.KAFKA,
                    _GROUP: s.name,
                    names.MESSAGING_DESTINATION_NAME: topic,
                    names.MESSAGING_DESTINATION_PARTITION_ID: str(partition),
                },
            )
            for s in self._services
            for (topic, partition), lag in sorted(s.lag_by_partition().items())
        ]


@dataclass(slots=True)
class _Count:
    """A monotonic count and the attributes it is reported with."""

    attributes: dict[str, str]
    value: int = 0


def _observe_counts(counts: dict[_K, _Count], _options: CallbackOptions) -> Iterable[Observation]:
    return [Observation(c.value, c.attributes) for c in list(counts.values())]


def _handled(s: Service) -> int:
    return s.stats.handled


def _retries(s: Service) -> int:
    return s.stats.retries


def _dead_lettered(s: Service) -> int:
    return s.stats.dead_lettered


def _redelivered(s: Service) -> int:
    return s.stats.redelivered_batches


def _commit_failures(s: Service) -> int:
    return s.stats.commit_failures


def _parked(s: Service) -> int:
    return s.stats.parked


def _replays_handled(s: Service) -> int:
    return s.stats.replays_handled


def _replays_skipped(s: Service) -> int:
    return s.stats.replays_skipped


def _rebalances(s: Service) -> int:
    return s.stats.rebalances


def _paused(s: Service) -> int:
    return s.stats.paused


def _transactions_committed(s: Service) -> int:
    return s.stats.transactions_committed


def _transactions_aborted(s: Service) -> int:
    return s.stats.transactions_aborted


def _parked_now(s: Service) -> float:
    return float(s.parked())


def _idle(s: Service) -> float:
    return float(s.health()["seconds_since_progress"])


def _healthy(s: Service) -> float:
    return 1.0 if s.healthy() else 0.0


_RECORD_COUNTERS = frozenset(
    {HANDLED, RETRIES, DEAD_LETTERED, PARKED, REPLAYS_HANDLED, REPLAYS_SKIPPED}
)


@dataclass
class Metrics:
    """A service process's metrics: the middleware to use, and their Prometheus registry.

    Attributes:
        middleware: Give it to every service (``Runtime.prepare`` does) and
            call ``middleware.observe(service)``.
        registry: The Prometheus registry ``/metrics`` serves.
        provider: The OpenTelemetry meter provider behind the instruments.
    """

    middleware: EventMetrics
    registry: CollectorRegistry
    provider: MeterProvider
    readers: list[MetricReader] = field(default_factory=list)

    def shutdown(self) -> None:
        """Push what an OTLP reader still holds and stop the readers."""
        self.provider.shutdown()


def configure_metrics(
    service_name: str, *, registry: CollectorRegistry | None = None, otlp: bool | None = None
) -> Metrics:
    """Build the event layer's metrics for ``service_name``.

    Args:
        service_name: ``service.name`` unless ``OTEL_SERVICE_NAME`` says otherwise.
        registry: The Prometheus registry to fill (default: a new one).
        otlp: Also push to the OTLP endpoint; default: when
            ``OTEL_METRICS_EXPORTER`` names ``otlp``.
    """
    import os

    registry = registry or CollectorRegistry()
    readers: list[MetricReader] = [PrometheusMetricReader(registry=registry)]
    if otlp is None:
        otlp = "otlp" in os.environ.get("OTEL_METRICS_EXPORTER", "").split(",")
    if otlp:
        readers.append(PeriodicExportingMetricReader(_otlp_exporter()))
    named = OTELResourceDetector().detect().attributes.get(SERVICE_NAME)
    provider = MeterProvider(
        metric_readers=readers,
        resource=Resource.create({SERVICE_NAME: str(named or service_name)}),
        views=[
            View(
                instrument_name=PROCESS_DURATION,
                aggregation=ExplicitBucketHistogramAggregation(DURATION_BUCKETS),
            )
        ],
    )
    meter = provider.get_meter(names.INSTRUMENTATION_NAME, schema_url=names.SCHEMA_URL)
    return Metrics(EventMetrics(meter), registry, provider, readers)


def _otlp_exporter() -> MetricExporter:
    # Endpoint, headers, TLS and timeout come from the standard OTEL_EXPORTER_OTLP_* variables.
    import os

    protocol = os.environ.get(
        "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    )
    if protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
            OTLPMetricExporter as HttpExporter,
        )

        return HttpExporter()
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

    return OTLPMetricExporter()
