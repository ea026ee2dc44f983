"""The gateway's Prometheus metrics, registered in a registry the caller owns."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class GatewayMetrics:
    """Counters of requests and events, request latency, and whether Kafka answers.

    Labels stay bounded: ``mode`` and ``status`` are small sets, ``type`` is a
    declared event type (``other`` for anything else).
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "choreo_gateway_requests",
            "HTTP requests to POST /events, by content mode and answer.",
            ["mode", "status"],
            registry=registry,
        )
        self.events = Counter(
            "choreo_gateway_events",
            "Events accepted, by type and outcome (published, duplicate).",
            ["type", "outcome"],
            registry=registry,
        )
        self.latency = Histogram(
            "choreo_gateway_request_duration_seconds",
            "Time from a request's arrival to its answer.",
            ["mode"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=registry,
        )
        self.kafka_up = Gauge(
            "choreo_gateway_kafka_up",
            "1 while the broker answers the gateway's probe, else 0.",
            registry=registry,
        )
