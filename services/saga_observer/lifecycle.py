"""Lifecycle events: what a transition publishes, and the relay that publishes it.

A transition is written to ``obs_lifecycle`` in the same transaction as the
judgement that made it (a transactional outbox). The relay then sends unsent
rows and marks them sent once the broker acknowledged them. Ids are derived
from (flow, type), so a row sent twice (a crash between the send and the mark,
or two instances relaying) is the same event twice, which consumers drop by
``ce_id``.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from aiokafka.errors import KafkaError
from opentelemetry import context as otel_context
from opentelemetry import propagate
from opentelemetry.context import Context

from choreokit.events import (
    MAX_TIME,
    MIN_TIME,
    ApprovalEscalated,
    ApprovalGranted,
    ApprovalRejected,
    ChoreoError,
    Event,
    Publisher,
)
from choreokit.services.saga_observer.events import (
    ExpectedStep,
    RefusedEvent,
    SagaCompensated,
    SagaCompleted,
    SagaFailed,
    SagaRejected,
    SagaStalled,
    SagaStepOverdue,
)
from choreokit.services.saga_observer.graph import FlowGraph
from choreokit.services.saga_observer.judge import Judgement, Status
from choreokit.services.saga_observer.records import from_micros, micros

logger = logging.getLogger("choreokit.observer.lifecycle")

_NAMESPACE = uuid.UUID("2f0f8a4c-3c1b-4f55-9d7e-5b3e0f6c2a17")

LIFECYCLE_MODELS: dict[str, type[Event]] = {
    model.event_info().type: model
    for model in (
        SagaCompleted,
        SagaFailed,
        SagaCompensated,
        SagaStalled,
        SagaRejected,
        SagaStepOverdue,
        # a checkpoint's decision (an operator's, or its deadline's fallback) rides the outbox
        ApprovalGranted,
        ApprovalRejected,
        ApprovalEscalated,
    )
}


@dataclass(frozen=True, slots=True)
class Transition:
    """A lifecycle event to publish for a flow that changed status.

    Attributes:
        id: Its ``ce_id``: derived from the flow and the type.
        correlation_id: The flow.
        type: ``saga.completed``, ``saga.failed``, ``saga.compensated``, ``saga.stalled``,
            ``saga.rejected`` or ``saga.step_overdue``.
        status: The status the flow moved to.
        caused_by: The event that decided it (the new event's ``ce_causationid``).
        payload: The event's JSON payload.
        created_us: When the transition was judged.
    """

    id: str
    correlation_id: str
    type: str
    status: str
    caused_by: str | None
    payload: str
    created_us: int


_FIRST_US = micros(MIN_TIME)
_LAST_US = micros(MAX_TIME) - 1


def bounded_moment(value_us: int) -> datetime:
    """The time ``value_us`` as a lifecycle event may carry it (the nearest bounded time)."""
    # A flow stored with times beyond the bounds (before envelopes were bounded) is
    # announced with the nearest time an event may carry.
    return from_micros(min(max(value_us, _FIRST_US), _LAST_US))


def lifecycle_id(correlation_id: str, event_type: str) -> str:
    """The ``ce_id`` of the flow's lifecycle event of ``event_type``."""
    return str(uuid.uuid5(_NAMESPACE, f"{correlation_id}\x1f{event_type}"))


def transition(graph: FlowGraph, judgement: Judgement, now_us: int) -> Transition | None:
    """The lifecycle event a flow publishes on entering ``judgement.status`` (if any)."""
    status, saga = judgement.status, judgement.saga
    if saga is None or status in (Status.RUNNING, Status.UNTRACKED):
        return None
    started = judgement.root.time_us if judgement.root else min(n.time_us for n in graph)
    end = judgement.end
    event: Event
    caused_by: str | None
    if status is Status.STALLED:
        latest = max(graph, key=lambda n: (n.time_us, n.id))
        assert judgement.deadline_us is not None
        event = SagaStalled(
            saga=saga,
            started_at=bounded_moment(started),
            deadline=from_micros(judgement.deadline_us),
            last_type=latest.type,
            expected=tuple(
                ExpectedStep(
                    reason=e.reason.value,
                    one_of=e.one_of,
                    after_id=e.after_id,
                    after_type=e.after_type,
                )
                for e in judgement.expected[:256]
            ),
        )
        caused_by = latest.id
    elif status is Status.REJECTED:
        assert judgement.ended_us is not None
        event = SagaRejected(
            saga=saga,
            started_at=bounded_moment(started),
            ended_at=bounded_moment(judgement.ended_us),
            refused=tuple(
                RefusedEvent(
                    event_id=r.event_id,
                    event_type=r.event_type or None,
                    group=r.group or None,
                    error_type=r.error_type or "unknown",
                )
                for r in judgement.refused[:256]
            ),
        )
        first = judgement.root or min(graph, key=lambda n: (n.time_us, n.id))
        caused_by = first.id
    else:
        assert end is not None
        ended = judgement.ended_us
        if status is Status.COMPLETED:
            assert ended is not None
            event = SagaCompleted(
                saga=saga,
                end_type=end.type,
                started_at=bounded_moment(started),
                ended_at=bounded_moment(ended),
                duration_ms=_duration_ms(started, ended),
                event_count=len(graph),
            )
            caused_by = end.id
        elif status is Status.COMPENSATED:
            assert ended is not None
            event = SagaCompensated(
                saga=saga,
                end_type=end.type,
                compensations=judgement.required,
                started_at=bounded_moment(started),
                ended_at=bounded_moment(ended),
                duration_ms=_duration_ms(started, ended),
            )
            last = max(
                (n for n in graph if n.type in judgement.required),
                key=lambda n: (n.time_us, n.id),
            )
            caused_by = last.id
        else:
            event = SagaFailed(
                saga=saga,
                status=status.value,
                end_type=end.type,
                started_at=bounded_moment(started),
                ended_at=bounded_moment(ended) if ended is not None else None,
                missing=judgement.missing,
            )
            caused_by = end.id
    event_type = type(event).event_info().type
    return Transition(
        id=lifecycle_id(graph.correlation_id, event_type),
        correlation_id=graph.correlation_id,
        type=event_type,
        status=status.value,
        caused_by=caused_by,
        payload=event.model_dump_json(),
        created_us=now_us,
    )


def _duration_ms(started_us: int, ended_us: int) -> int:
    # Producers' clocks differ: an end stamped before its start is a flow of no duration,
    # not a lifecycle event that fails to validate (and a batch that cannot be applied).
    return max(0, (ended_us - started_us) // 1000)


@dataclass(frozen=True, slots=True)
class Pending:
    """An unsent lifecycle row, claimed by one relay for a while."""

    id: str
    correlation_id: str
    type: str
    caused_by: str | None
    payload: str
    created_us: int
    traceparent: str | None = None
    """The deciding event's ``traceparent``: the lifecycle event's ``send`` span continues
    that trace (the flow's), instead of starting one of its own."""


def _cause_context(traceparent: str | None) -> Context:
    """The context a lifecycle event is sent in: its cause's trace, else none at all."""
    if not traceparent:
        return Context()
    return propagate.extract({"traceparent": traceparent}, context=Context())


class Outbox(Protocol):
    """What the relay needs from the store."""

    async def claim(self, owner: str, now_us: int, lease_us: int, limit: int) -> list[Pending]:
        """Claim up to ``limit`` unsent rows no live claim holds."""
        ...

    async def mark_sent(self, ids: list[str], now_us: int) -> None:
        """Record that ``ids`` were acknowledged by the broker."""
        ...


class LifecycleRelay:
    """Publishes the outbox's unsent lifecycle events, at least once each.

    Args:
        outbox: The store's lifecycle rows.
        publisher: The observer's publisher (with the runtime's middlewares).
        owner: This instance's name in claims.
        clock: Microseconds since the epoch, now.
        on_published: Called with the type of every acknowledged event (metrics).
        interval: How often to look when nobody calls :meth:`wake`.
        lease: How long a claim holds before another relay may take the row.
    """

    def __init__(
        self,
        outbox: Outbox,
        publisher: Publisher,
        *,
        owner: str,
        clock: Callable[[], int],
        on_published: Callable[[str], None] = lambda _t: None,
        interval: timedelta = timedelta(seconds=1),
        lease: timedelta = timedelta(seconds=30),
    ) -> None:
        self._outbox = outbox
        self._publisher = publisher
        self._owner = owner
        self._clock = clock
        self._on_published = on_published
        self._interval = interval.total_seconds()
        self._lease_us = int(lease.total_seconds() * 1_000_000)
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Look for rows now (called after a commit that wrote some)."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Relay until ``stop`` is set; errors are logged and the rows retried later."""
        while not stop.is_set():
            try:
                sent = await self.relay_once()
            except (ChoreoError, KafkaError, OSError) as exc:
                logger.warning("lifecycle relay failed (%s); retrying", exc)
                sent = 0
            except Exception:
                logger.exception("lifecycle relay failed; retrying")
                sent = 0
            if sent:
                continue
            self._wake.clear()
            waiter = asyncio.ensure_future(self._wake.wait())
            stopper = asyncio.ensure_future(stop.wait())
            try:
                await asyncio.wait(
                    {waiter, stopper}, timeout=self._interval, return_when="FIRST_COMPLETED"
                )
            finally:
                waiter.cancel()
                stopper.cancel()

    async def relay_once(self, limit: int = 200) -> int:
        """Send one page of unsent rows; return how many were acknowledged."""
        rows = await self._outbox.claim(self._owner, self._clock(), self._lease_us, limit)
        if not rows:
            return 0
        futures = []
        for row in rows:
            model = LIFECYCLE_MODELS[row.type]
            outbound = self._publisher.prepare(
                model.model_validate_json(row.payload),
                correlation_id=row.correlation_id,
                causation_id=row.caused_by,
                event_id=row.id,
                time=from_micros(row.created_us),
            )
            token = otel_context.attach(_cause_context(row.traceparent))
            try:
                futures.append(await self._publisher.send(outbound))
            finally:
                otel_context.detach(token)
        outcomes = await asyncio.gather(*futures, return_exceptions=True)
        done = [
            row for row, o in zip(rows, outcomes, strict=True) if not isinstance(o, BaseException)
        ]
        if done:
            await self._outbox.mark_sent([row.id for row in done], self._clock())
            for row in done:
                self._on_published(row.type)
        failed = len(rows) - len(done)
        if failed:
            logger.warning("%d lifecycle event(s) were not acknowledged; retrying later", failed)
        return len(done)
