"""The observer's Prometheus metrics, registered on a registry it is given (no global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ObserverMetrics:
    """Counters and gauges of one observer instance.

    Args:
        registry: Where the collectors are registered; ``/metrics`` renders it.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.records = Counter(
            "choreo_observer_records",
            "Records read by this instance, by what they were: event (first copy), duplicate "
            "(a repeated ce_id), dead_letter, dlq_audit (a replay, purge or replay outcome), "
            "lifecycle (the observer's own saga.* events), "
            "rejected (not an event at all).",
            ["kind"],
            registry=registry,
        )
        self.batches = Counter(
            "choreo_observer_batches", "Batches applied to the database.", registry=registry
        )
        self.batch_seconds = Histogram(
            "choreo_observer_batch_seconds",
            "Time to apply one batch (one database transaction).",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=registry,
        )
        self.fenced = Counter(
            "choreo_observer_fenced_batches",
            "Batches refused because another instance had moved a partition's stored offset.",
            registry=registry,
        )
        self.database_errors = Counter(
            "choreo_observer_database_errors",
            "Database errors; the work is retried from the stored offsets.",
            registry=registry,
        )
        self.transitions = Counter(
            "choreo_observer_transitions",
            "Flows that changed to a status with a lifecycle event, by event type.",
            ["type"],
            registry=registry,
        )
        self.published = Counter(
            "choreo_observer_lifecycle_published",
            "Lifecycle events acknowledged by the broker, by type.",
            ["type"],
            registry=registry,
        )
        self.assigned = Gauge(
            "choreo_observer_assigned_partitions",
            "Partitions this instance reads.",
            registry=registry,
        )
        self.lag = Gauge(
            "choreo_observer_lag_records",
            "Records on this instance's partitions not yet applied (as of the last fetch).",
            registry=registry,
        )
        self.flows = Gauge(
            "choreo_observer_flows",
            "Flows in the database by status (computed when scraped).",
            ["status"],
            registry=registry,
        )
