"""What every scenario is given: the engine's broker, the run's sizes, a scratch directory."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENGINES = ("tansu", "kafka")
ENGINE_NAMES = {"tansu": "Tansu (embedded)", "kafka": "Apache Kafka"}


@dataclass(frozen=True)
class Sizes:
    """How much each scenario does per repetition (``--quick`` shrinks every figure)."""

    hop_records: int = 5_000
    hop_faststream_records: int = 1_000
    hop_inbox_records: int = 1_000
    flow_rates: tuple[float, ...] = (50.0, 100.0, 200.0, 400.0)
    flow_seconds: float = 1.5
    saga_orders: int = 40
    observer_backlog: int = 100_000
    observer_windows: int = 5
    observer_detail_requests: int = 20
    gateway_seconds: float = 1.5
    gateway_warmup: float = 0.5
    gateway_concurrency: int = 16
    gateway_batch: int = 10
    idle_seconds: float = 4.0

    @classmethod
    def quick(cls) -> Sizes:
        """One short repetition of everything: proves the harness, measures nothing."""
        return cls(
            hop_records=300,
            hop_faststream_records=100,
            hop_inbox_records=100,
            flow_rates=(50.0,),
            flow_seconds=0.4,
            saga_orders=4,
            observer_backlog=2_000,
            observer_windows=2,
            observer_detail_requests=3,
            gateway_seconds=0.5,
            gateway_warmup=0.2,
            gateway_concurrency=4,
            gateway_batch=10,
            idle_seconds=2.0,
        )


@dataclass
class Context:
    """One engine's broker and the run's settings, as each scenario sees them."""

    engine: str
    bootstrap: str
    repeat: int
    sizes: Sizes
    workdir: Path
    postgres_url: str | None
    kafka_version: str | None = None
    broker_pid: int | None = None
    """The embedded broker's process (``None`` for Apache Kafka's nodes)."""
    log: Callable[[str], None] = field(default=lambda line: print(line, file=sys.stderr))

    @property
    def engine_name(self) -> str:
        """The engine as the report names it (with its version where known)."""
        name = ENGINE_NAMES[self.engine]
        return f"{name} {self.kafka_version}" if self.kafka_version else name

    def child_env(self, **extra: str) -> dict[str, str]:
        """The environment of a scenario's child process: no OTEL_/CHOREO_ leaking in."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "CHOREO_"))}
        env.update(extra)
        return env


def skipped(reason: str) -> dict[str, Any]:
    """A variant that did not run, with the reason the report prints."""
    return {"skipped": reason}


def postgres_url() -> str | None:
    """The PostgreSQL to measure against: ``CHOREO_BENCH_POSTGRES_URL`` or the test one."""
    return os.environ.get("CHOREO_BENCH_POSTGRES_URL") or os.environ.get("CHOREO_TEST_POSTGRES_URL")
