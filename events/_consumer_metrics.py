"""A service's consumer as Prometheus metrics, read from its counters at scrape time."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from choreokit.events._service import Service


class ConsumerMetrics(Collector):
    """Exposes the consumer of each service given (``service`` label).

    Counters: ``choreo_consumer_{handled,dead_lettered,retries,parked,
    commit_failures,rebalances,paused,replays_handled,replays_skipped}_total``;
    gauges: ``choreo_consumer_lag`` (records not done on this member's
    partitions), ``choreo_consumer_parked_records`` (in retry lanes now),
    ``choreo_consumer_seconds_since_progress`` and ``choreo_consumer_healthy``.

    Example::

        registry.register(ConsumerMetrics(inventory))
    """

    _COUNTERS = (
        ("handled", "Records whose handler succeeded."),
        ("dead_lettered", "Records sent to a dead-letter topic."),
        ("retries", "Handler tries that failed and were tried again."),
        ("parked", "Records handed to their key's retry lane (the partition went on)."),
        ("commit_failures", "Offset commits the broker refused (the records are read again)."),
        ("rebalances", "Partition revocations (rebalances) this member took part in."),
        ("paused", "Times a partition was paused because its retry lanes were full."),
        ("replays_handled", "Replayed dead letters this group handled."),
        ("replays_skipped", "Replayed dead letters skipped: they were for another group."),
    )

    def __init__(self, *services: Service) -> None:
        self._services = services

    def collect(self) -> Iterator[Metric]:
        """Yield every metric, one sample per service."""
        for name, doc in self._COUNTERS:
            family = CounterMetricFamily(f"choreo_consumer_{name}", doc, labels=["service"])
            for service in self._services:
                family.add_metric([service.name], getattr(service.stats, name))
            yield family
        gauges: tuple[tuple[str, str, Callable[[Service], float]], ...] = (
            ("lag", "Records on this member's partitions not done yet.", lambda s: s.lag()),
            ("parked_records", "Records in retry lanes now.", lambda s: s.parked()),
            (
                "seconds_since_progress",
                "Seconds since a record was last done.",
                lambda s: s.health()["seconds_since_progress"],
            ),
            ("healthy", "1 if the consumer makes progress (see /healthz).", lambda s: s.healthy()),
        )
        for name, doc, value in gauges:
            gauge = GaugeMetricFamily(f"choreo_consumer_{name}", doc, labels=["service"])
            for service in self._services:
                gauge.add_metric([service.name], float(value(service)))
            yield gauge
