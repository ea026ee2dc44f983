"""Following flows on the wire: every event of the order flow, grouped and judged per flow."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from choreokit.events import (
    ChoreoError,
    KafkaSettings,
    broker_unavailable,
    client_options,
    decode,
    record_time,
)
from choreokit.services.example.demo.plan import Outcome

TOPICS = ("orders", "inventory", "payments", "shipping")


@dataclass
class Flow:
    """The events of one flow seen so far (each ``ce_id`` once)."""

    correlation_id: str
    events: dict[str, tuple[str, datetime, str | None, dict[str, Any]]] = field(
        default_factory=dict
    )
    """ce_id -> (type, time, causation id, payload)."""

    def add(
        self, event_id: str, event_type: str, time: datetime, cause: str | None, data: Any
    ) -> None:
        """Record one event (a repeat of a known id changes nothing)."""
        self.events.setdefault(
            event_id, (event_type, time, cause, data if isinstance(data, dict) else {})
        )

    def _of(self, event_type: str) -> list[tuple[datetime, dict[str, Any]]]:
        return [(t, d) for (kind, t, _, d) in self.events.values() if kind == event_type]

    @property
    def types(self) -> set[str]:
        """The event types seen."""
        return {kind for kind, *_ in self.events.values()}

    @property
    def transitions(self) -> set[str]:
        """``"cause type -> effect type"`` for each step the flow took (each pair once)."""
        return {
            f"{self.events[cause][0]} -> {kind}"
            for kind, _, cause, _ in self.events.values()
            if cause is not None and cause in self.events
        }

    @property
    def closed(self) -> bool:
        """Whether every cause named by an event has been seen (no effect without its cause)."""
        return all(cause is None or cause in self.events for _, _, cause, _ in self.events.values())

    @property
    def started_at(self) -> datetime | None:
        """When the flow's ``order.placed`` happened."""
        placed = self._of("order.placed")
        return min(t for t, _ in placed) if placed else None

    def judge(self) -> tuple[Outcome, str | None, datetime | None]:
        """The outcome so far, the cancellation reason, and when the flow ended."""
        if not self.closed or self.started_at is None:
            return Outcome.RUNNING, None, None
        types = self.types
        if "order.confirmed" in types:
            return Outcome.COMPLETED, None, max(t for t, _ in self._of("order.confirmed"))
        cancelled = self._of("order.cancelled")
        if not cancelled:
            return Outcome.RUNNING, None, None
        reason = str(cancelled[0][1].get("reason"))
        required = []
        if "stock.reserved" in types:
            required.append("stock.released")
        if "payment.authorized" in types:
            required.append("payment.refunded")
        if any(r not in types for r in required):
            return Outcome.RUNNING, reason, None
        ends = [t for kind in ("order.cancelled", *required) for t, _ in self._of(kind)]
        return (Outcome.COMPENSATED if required else Outcome.FAILED), reason, max(ends)


class FlowTracker:
    """Reads the order-flow topics (no consumer group, no commits) and keeps every flow."""

    def __init__(self, settings: KafkaSettings, topics: Iterable[str] = TOPICS) -> None:
        self._settings = settings
        self._topics = tuple(topics)
        self.flows: dict[str, Flow] = {}
        self.records = 0
        self.undecodable = 0
        self.changed = asyncio.Event()
        """Set whenever new records were read; clear it before waiting on it."""
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, *, from_end: bool) -> None:
        """Join the topics; with ``from_end``, only what is published from now on counts."""
        consumer = AIOKafkaConsumer(
            **client_options(self._settings),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=20,
        )
        try:
            await consumer.start()
        except KafkaError as exc:
            await consumer.stop()
            raise broker_unavailable(self._settings, exc, "following the demo's flows") from exc
        # Fresh metadata for every topic. consumer.topics() would fetch it too, but leaves the
        # consumer's own cache (partitions_for_topic) empty on Apache Kafka, which, unlike the
        # embedded broker, answers the client's bootstrap metadata request with no topics.
        cluster = await consumer._client.fetch_all_metadata()
        partitions = []
        for topic in self._topics:
            found = cluster.partitions_for_topic(topic)
            if not found:
                await consumer.stop()
                raise ChoreoError(f"topic {topic!r} does not exist: are the services running?")
            partitions += [TopicPartition(topic, p) for p in sorted(found)]
        consumer.assign(partitions)
        if from_end:
            await consumer.seek_to_end(*partitions)
        for tp in partitions:
            await consumer.position(tp)
        self._consumer = consumer
        self._task = asyncio.ensure_future(self._consume(consumer))

    async def _consume(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for record in records:
                    self.records += 1
                    try:
                        decoded = decode(
                            record.headers,
                            record.value,
                            fallback_time=record_time(record.timestamp),
                        )
                        data = decoded.data if decoded.structured else json.loads(decoded.data)
                    except (ChoreoError, ValueError):
                        self.undecodable += 1
                        continue
                    env = decoded.envelope
                    flow = self.flows.get(env.correlation_id)
                    if flow is None:
                        flow = self.flows[env.correlation_id] = Flow(env.correlation_id)
                    flow.add(env.id, env.type, env.time, env.causation_id, data)
            if batch:
                self.changed.set()

    async def stop(self) -> None:
        """Stop reading."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()

    def flow(self, correlation_id: str) -> Flow:
        """The flow of ``correlation_id`` (empty if nothing was seen yet)."""
        return self.flows.get(correlation_id) or Flow(correlation_id)
