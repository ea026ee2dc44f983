"""Reading the projection for the API: flows, one flow, counts, topology, what was refused."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import quote, urlencode

from sqlalchemy import ColumnElement, and_, exists, func, or_, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from choreokit.events import SagaSpec
from choreokit.events.dlq import normalise_message
from choreokit.services.saga_observer import schema
from choreokit.services.saga_observer.catalog import SagaCatalog
from choreokit.services.saga_observer.graph import FlowGraph, Node
from choreokit.services.saga_observer.judge import Status
from choreokit.services.saga_observer.orchestrations import (
    RUN_TYPE,
    StoredReport,
    orchestration_runs,
)
from choreokit.services.saga_observer.records import from_micros
from choreokit.services.saga_observer.views import (
    Counts,
    DeadLetterView,
    EdgeView,
    EventDetail,
    EventView,
    ExpectedStepView,
    Facets,
    FailureGroupView,
    FlowDetail,
    FlowSummary,
    GraphView,
    LifecycleView,
    LinkView,
    Percentiles,
    PositionView,
    PublishView,
    ReactionView,
    RejectView,
    SagaView,
    ServiceTiming,
    TopologyView,
    TraceView,
)
from choreokit.services.saga_observer.waits import waiting_condition
from choreokit.tracing import flow_label

E, F, D, R, L, OFF, P = (
    schema.events,
    schema.flows,
    schema.dead_letters,
    schema.rejects,
    schema.lifecycle,
    schema.offsets,
    schema.publishers,
)
DS = schema.dead_letter_status
LATENCY_SAMPLE = 50_000
_LETTERS = D.outerjoin(
    DS,
    and_(
        DS.c.topic == D.c.topic,
        DS.c.kafka_partition == D.c.kafka_partition,
        DS.c.kafka_offset == D.c.kafka_offset,
    ),
)
_LETTER_COLUMNS = (*D.c, func.coalesce(DS.c.status, "dead").label("status"), DS.c.status_us)


class Sort(StrEnum):
    """How flows are listed."""

    NEWEST = "-started_at"
    OLDEST = "started_at"
    RECENT_ACTIVITY = "-last_event_at"
    MOST_EVENTS = "-event_count"
    FEWEST_EVENTS = "event_count"


@dataclass(frozen=True)
class FlowFilter:
    """What to list. Every field narrows the list; ``None`` and empty mean any.

    Attributes:
        statuses: Any of these statuses.
        saga: The saga type.
        event_type: Flows with at least one event of this type.
        service: Flows with at least one event from this service.
        since_us: Started at or after (microseconds since the epoch).
        until_us: Started before.
        correlation_id: Exactly this flow.
        search: A correlation id prefix, or the id of one of the flow's events.
        connected: Whether the graph is one tree rooted at the start event.
        dead_letters: Whether the flow has dead letters.
        cause_type: With ``event_type``: an event of that type caused by one of this type.
        waiting_at: Flows waiting at this step now (running or stalled).
        waiting_since_us: Flows waiting (at ``waiting_at``, else anywhere) since this moment
            or earlier.
        dead_letter_error: Flows with an open dead letter of this error type.
        dead_letter_type: Flows with an open dead letter of an event of this type.
        dead_letter_fingerprint: Flows with an open dead letter of this failure group.
    """

    statuses: tuple[Status, ...] = ()
    saga: str | None = None
    event_type: str | None = None
    service: str | None = None
    since_us: int | None = None
    until_us: int | None = None
    correlation_id: str | None = None
    search: str | None = None
    connected: bool | None = None
    dead_letters: bool | None = None
    cause_type: str | None = None
    waiting_at: str | None = None
    waiting_since_us: int | None = None
    dead_letter_error: str | None = None
    dead_letter_type: str | None = None
    dead_letter_fingerprint: str | None = None

    def where(self) -> list[ColumnElement[bool]]:
        """The SQL conditions."""
        found: list[ColumnElement[bool]] = []
        if self.statuses:
            found.append(F.c.status.in_([s.value for s in self.statuses]))
        if self.saga is not None:
            found.append(F.c.saga == self.saga)
        if self.event_type is not None and self.cause_type is not None:
            cause = E.alias("cause")
            found.append(
                exists()
                .select_from(E.join(cause, cause.c.id == E.c.causation_id))
                .where(
                    E.c.correlation_id == F.c.correlation_id,
                    E.c.type == self.event_type,
                    cause.c.type == self.cause_type,
                )
            )
        elif self.event_type is not None:
            found.append(
                exists().where(
                    E.c.correlation_id == F.c.correlation_id, E.c.type == self.event_type
                )
            )
        if self.service is not None:
            found.append(
                exists().where(
                    E.c.correlation_id == F.c.correlation_id, E.c.service == self.service
                )
            )
        found += self._stuck()
        if self.since_us is not None:
            found.append(F.c.started_us >= self.since_us)
        if self.until_us is not None:
            found.append(F.c.started_us < self.until_us)
        if self.correlation_id is not None:
            found.append(F.c.correlation_id == self.correlation_id)
        if self.search:
            prefix = self.search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            found.append(
                or_(
                    F.c.correlation_id.like(prefix + "%", escape="\\"),
                    F.c.correlation_id.in_(select(E.c.correlation_id).where(E.c.id == self.search)),
                )
            )
        if self.connected is not None:
            found.append(F.c.connected.is_(self.connected))
        if self.dead_letters is not None:
            found.append(F.c.dead_letters > 0 if self.dead_letters else F.c.dead_letters == 0)
        return found

    def _stuck(self) -> list[ColumnElement[bool]]:
        """Where flows wait, and why: the waiting and dead-letter conditions."""
        found: list[ColumnElement[bool]] = []
        if self.waiting_at is not None or self.waiting_since_us is not None:
            found.append(
                exists().where(
                    waiting_condition(
                        F.c.correlation_id,
                        step=self.waiting_at,
                        since_before_us=self.waiting_since_us,
                    )
                )
            )
        letter = [
            (D.c.error_type, self.dead_letter_error),
            (D.c.event_type, self.dead_letter_type),
            (D.c.fingerprint, self.dead_letter_fingerprint),
        ]
        if any(value is not None for _, value in letter):
            found.append(
                exists()
                .select_from(_LETTERS)
                .where(
                    D.c.correlation_id == F.c.correlation_id,
                    or_(DS.c.status.is_(None), DS.c.status.notin_(("resolved", "purged"))),
                    *(column == value for column, value in letter if value is not None),
                )
            )
        return found


_ORDER = {
    Sort.NEWEST: (F.c.started_us.desc(), F.c.correlation_id),
    Sort.OLDEST: (F.c.started_us.asc(), F.c.correlation_id),
    Sort.RECENT_ACTIVITY: (F.c.last_us.desc(), F.c.correlation_id),
    Sort.MOST_EVENTS: (F.c.event_count.desc(), F.c.correlation_id),
    Sort.FEWEST_EVENTS: (F.c.event_count.asc(), F.c.correlation_id),
}


class Queries:
    """The observer's database, on the read side.

    Args:
        engine: Where to read.
        catalog: The saga specs (shown with flows).
        group: The consumer group whose positions are shown.
        jaeger_url: Base URL of the Jaeger UI.
    """

    def __init__(
        self, engine: AsyncEngine, catalog: SagaCatalog, *, group: str, jaeger_url: str
    ) -> None:
        self._engine = engine
        self._catalog = catalog
        self._group = group
        self._jaeger = jaeger_url.rstrip("/")

    async def ping(self) -> None:
        """Raise if the database cannot be reached."""
        async with self._engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def flows(
        self, where: FlowFilter, *, limit: int, offset: int, sort: Sort = Sort.NEWEST
    ) -> tuple[list[FlowSummary], int]:
        """A page of flows matching ``where``, and how many match in all."""
        conditions = where.where()
        async with self._engine.connect() as conn:
            total = (
                await conn.execute(select(func.count()).select_from(F).where(*conditions))
            ).scalar_one()
            rows = await conn.execute(
                select(F).where(*conditions).order_by(*_ORDER[sort]).limit(limit).offset(offset)
            )
            publishers = await self._publishers(conn)
            return [_summary(r._mapping, publishers) for r in rows], int(total)

    async def flow(self, correlation_id: str) -> FlowDetail | None:
        """Everything about one flow, or ``None`` if it is unknown."""
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(select(F).where(F.c.correlation_id == correlation_id))
            ).first()
            if row is None:
                return None
            events = (
                await conn.execute(
                    select(
                        E.c.id,
                        E.c.type,
                        E.c.dataversion,
                        E.c.source,
                        E.c.service,
                        E.c.time_us,
                        E.c.causation_id,
                        E.c.trace_id,
                        E.c.topic,
                        E.c.kafka_partition,
                        E.c.kafka_offset,
                        E.c.deliveries,
                        E.c.size,
                        E.c.joined,
                    )
                    .where(E.c.correlation_id == correlation_id)
                    .order_by(E.c.time_us, E.c.id)
                )
            ).all()
            letters = (
                await conn.execute(
                    select(*_LETTER_COLUMNS)
                    .select_from(_LETTERS)
                    .where(D.c.correlation_id == correlation_id)
                    .order_by(D.c.failed_us)
                )
            ).all()
            lifecycle = (
                await conn.execute(
                    select(L)
                    .where(L.c.correlation_id == correlation_id)
                    .order_by(L.c.created_us, L.c.id)
                )
            ).all()
            reports = (
                await conn.execute(
                    select(E.c.id, E.c.service, E.c.causation_id, E.c.time_us, E.c.payload).where(
                        E.c.type == RUN_TYPE, E.c.correlation_id == correlation_id
                    )
                )
            ).all()
            publishers = await self._publishers(conn)
        summary = _summary(row._mapping, publishers)
        graph = FlowGraph(
            correlation_id,
            (
                Node(
                    e.id,
                    e.type,
                    e.time_us,
                    e.causation_id,
                    e.service,
                    tuple(e.joined.split(",")) if e.joined else (),
                )
                for e in events
            ),
        )
        spec = self._catalog.get(summary.saga) if summary.saga else None
        depth = graph.depth()
        return FlowDetail(
            **summary.model_dump(),
            events=_events(graph, events, depth),
            graph=_graph(graph, spec, depth),
            timings=_timings(graph),
            traces=self._traces(events),
            jaeger_search_url=self._search_url(correlation_id, graph, spec),
            dead_letter_records=[_dead_letter(r._mapping) for r in letters],
            lifecycle=[
                LifecycleView(
                    id=r.id,
                    type=r.type,
                    status=r.status,
                    caused_by=r.caused_by,
                    created_at=from_micros(r.created_us),
                    sent_at=from_micros(r.sent_us) if r.sent_us is not None else None,
                    observed=r.observed,
                )
                for r in lifecycle
            ],
            spec=saga_view(spec) if spec else None,
            orchestrations=orchestration_runs(StoredReport(*r) for r in reports),
        )

    async def event(self, event_id: str) -> EventDetail | None:
        """One event with its payload, or ``None`` if it is unknown."""
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(E).where(E.c.id == event_id))).first()
            if row is None:
                return None
            cause = None
            if row.causation_id is not None:
                cause = (
                    await conn.execute(
                        select(E.c.type, E.c.time_us).where(E.c.id == row.causation_id)
                    )
                ).first()
        payload: Any = None
        if row.payload is not None:
            try:
                payload = json.loads(row.payload)
            except ValueError:
                payload = row.payload
        return EventDetail(
            id=row.id,
            type=row.type,
            dataversion=row.dataversion,
            source=row.source,
            service=row.service,
            time=from_micros(row.time_us),
            causation_id=row.causation_id,
            cause_type=cause.type if cause else None,
            orphan=row.causation_id is not None and cause is None,
            depth=0,
            latency_ms=(row.time_us - cause.time_us) / 1000 if cause else None,
            trace_id=row.trace_id,
            topic=row.topic,
            partition=row.kafka_partition,
            offset=row.kafka_offset,
            deliveries=row.deliveries,
            size=row.size,
            joined=row.joined.split(",") if row.joined else [],
            correlation_id=row.correlation_id,
            traceparent=row.traceparent,
            payload=payload,
            payload_truncated=row.payload is None,
            jaeger_url=self._trace_url(row.trace_id) if row.trace_id else None,
        )

    async def counts(
        self, *, saga: str | None = None, since_us: int | None = None, until_us: int | None = None
    ) -> Counts:
        """Flows by status (every status present, zero included)."""
        where = FlowFilter(saga=saga, since_us=since_us, until_us=until_us).where()
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                select(F.c.status, func.count()).where(*where).group_by(F.c.status)
            )
            found = {r[0]: int(r[1]) for r in rows}
        by_status = {s.value: found.pop(s.value, 0) for s in Status} | found
        return Counts(total=sum(by_status.values()), by_status=by_status)

    async def topology(
        self, *, since_us: int | None = None, until_us: int | None = None
    ) -> TopologyView:
        """Who publishes which type, who reacts to which type, with counts and latencies."""
        cause = E.alias("cause")
        window = _window(E.c.time_us, since_us, until_us)
        async with self._engine.connect() as conn:
            published = (
                await conn.execute(
                    select(E.c.service, E.c.type, func.count())
                    .where(*window)
                    .group_by(E.c.service, E.c.type)
                    .order_by(E.c.service, E.c.type)
                )
            ).all()
            joined = E.join(cause, cause.c.id == E.c.causation_id)
            links = (
                await conn.execute(
                    select(cause.c.service, cause.c.type, E.c.service, E.c.type, func.count())
                    .select_from(joined)
                    .where(*window)
                    .group_by(cause.c.service, cause.c.type, E.c.service, E.c.type)
                    .order_by(cause.c.type, E.c.service, E.c.type, cause.c.service)
                )
            ).all()
            sample = (
                await conn.execute(
                    select(cause.c.type, E.c.service, E.c.time_us - cause.c.time_us)
                    .select_from(joined)
                    .where(*window)
                    .order_by(E.c.time_us.desc())
                    .limit(LATENCY_SAMPLE)
                )
            ).all()
        latencies: dict[tuple[str, str], list[float]] = defaultdict(list)
        for cause_type, service, micros_ in sample:
            latencies[(cause_type, service)].append(micros_ / 1000)
        reactions: dict[tuple[str, str], tuple[int, set[str]]] = {}
        for _from_service, cause_type, service, effect_type, count in links:
            total, produces = reactions.get((cause_type, service), (0, set()))
            produces.add(effect_type)
            reactions[(cause_type, service)] = (total + int(count), produces)
        services = sorted({r[0] for r in published} | {r[0] for r in links} | {r[2] for r in links})
        return TopologyView(
            services=services,
            event_types=sorted({r[1] for r in published}),
            publishers=[
                PublishView(service=s, event_type=t, count=int(c)) for s, t, c in published
            ],
            reactions=[
                ReactionView(
                    event_type=cause_type,
                    service=service,
                    count=count,
                    produces=sorted(produces),
                    latency_ms=percentiles(latencies.get((cause_type, service), [])),
                )
                for (cause_type, service), (count, produces) in sorted(reactions.items())
            ],
            links=[
                LinkView(
                    from_service=f,
                    cause_type=c,
                    to_service=t,
                    effect_type=e,
                    count=int(n),
                )
                for f, c, t, e, n in links
            ],
            latency_sample=LATENCY_SAMPLE,
        )

    async def facets(self) -> Facets:
        """The values the list filters can take."""
        async with self._engine.connect() as conn:
            pairs = (await conn.execute(select(P.c.type, P.c.service))).all()
        type_list = sorted({t for t, _ in pairs})
        services = sorted({s for _, s in pairs})
        return Facets(
            statuses=[s.value for s in Status],
            sagas=[spec.name for spec in self._catalog],
            event_types=type_list,
            services=services,
        )

    async def dead_letters(
        self,
        *,
        limit: int,
        offset: int,
        attached: bool | None = None,
        status: str | None = None,
        fingerprint: str | None = None,
        group: str | None = None,
        correlation_id: str | None = None,
    ) -> tuple[list[DeadLetterView], int]:
        """Dead letters, newest first, narrowed by each filter given.

        ``attached`` keeps those with (or without) a flow; ``status`` is one of
        dead, replayed, resolved, failed, purged.
        """
        where: list[Any] = []
        if attached is not None:
            where.append(
                D.c.correlation_id.is_not(None) if attached else D.c.correlation_id.is_(None)
            )
        if status is not None:
            where.append(func.coalesce(DS.c.status, "dead") == status)
        if fingerprint is not None:
            where.append(D.c.fingerprint == fingerprint)
        if group is not None:
            where.append(D.c.group_id == group)
        if correlation_id is not None:
            where.append(D.c.correlation_id == correlation_id)
        async with self._engine.connect() as conn:
            total = (
                await conn.execute(select(func.count()).select_from(_LETTERS).where(*where))
            ).scalar_one()
            rows = await conn.execute(
                select(*_LETTER_COLUMNS)
                .select_from(_LETTERS)
                .where(*where)
                .order_by(D.c.failed_us.desc(), D.c.key)
                .limit(limit)
                .offset(offset)
            )
            return [_dead_letter(r._mapping) for r in rows], int(total)

    async def dead_letter(self, topic: str, partition: int, offset: int) -> DeadLetterView | None:
        """One dead letter by its position in its ``*.dlq`` topic."""
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(*_LETTER_COLUMNS)
                    .select_from(_LETTERS)
                    .where(
                        D.c.topic == topic,
                        D.c.kafka_partition == partition,
                        D.c.kafka_offset == offset,
                    )
                )
            ).first()
        return _dead_letter(row._mapping) if row is not None else None

    async def dead_letter_groups(self, *, limit: int) -> list[FailureGroupView]:
        """Failure groups (same error type, normalised message and top frame), largest first.

        Purged and resolved dead letters are left out.
        """
        status = func.coalesce(DS.c.status, "dead")
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                select(
                    D.c.fingerprint,
                    func.min(D.c.error_type).label("error_type"),
                    func.min(D.c.error_message).label("message"),
                    func.min(D.c.error_frame).label("frame"),
                    func.count().label("letters"),
                    func.min(D.c.failed_us).label("first_us"),
                    func.max(D.c.failed_us).label("last_us"),
                    func.count(func.distinct(D.c.group_id)).label("groups"),
                )
                .select_from(_LETTERS)
                .where(status.notin_(("resolved", "purged")))
                .group_by(D.c.fingerprint)
                .order_by(func.count().desc(), D.c.fingerprint)
                .limit(limit)
            )
            return [
                FailureGroupView(
                    fingerprint=r.fingerprint or "",
                    error_type=r.error_type,
                    message=normalise_message(r.message or ""),
                    frame=r.frame or "",
                    count=r.letters,
                    first_seen=from_micros(r.first_us),
                    last_seen=from_micros(r.last_us),
                    groups=r.groups,
                )
                for r in rows
            ]

    async def rejects(self, *, limit: int, offset: int) -> tuple[list[RejectView], int]:
        """Records that were not events at all, newest first."""
        async with self._engine.connect() as conn:
            total = (await conn.execute(select(func.count()).select_from(R))).scalar_one()
            rows = await conn.execute(
                select(R)
                .order_by(R.c.time_us.desc(), R.c.topic, R.c.kafka_partition, R.c.kafka_offset)
                .limit(limit)
                .offset(offset)
            )
            return [
                RejectView(
                    topic=r.topic,
                    partition=r.kafka_partition,
                    offset=r.kafka_offset,
                    error_type=r.error_type,
                    error_message=r.error_message,
                    key=r.record_key,
                    size=r.size,
                    time=from_micros(r.time_us),
                )
                for r in rows
            ], int(total)

    async def totals(self) -> dict[str, int]:
        """Counts of what the database holds."""
        async with self._engine.connect() as conn:
            events, duplicates = (
                await conn.execute(
                    select(func.count(), func.coalesce(func.sum(E.c.deliveries - 1), 0))
                )
            ).one()
            flows = (await conn.execute(select(func.count()).select_from(F))).scalar_one()
            letters = (await conn.execute(select(func.count()).select_from(D))).scalar_one()
            rejects = (await conn.execute(select(func.count()).select_from(R))).scalar_one()
            pending = (
                await conn.execute(select(func.count()).select_from(L).where(L.c.sent_us.is_(None)))
            ).scalar_one()
            sent = (
                await conn.execute(
                    select(func.count()).select_from(L).where(L.c.sent_us.is_not(None))
                )
            ).scalar_one()
        return {
            "flows": int(flows),
            "events": int(events),
            "duplicates": int(duplicates),
            "dead_letters": int(letters),
            "rejects": int(rejects),
            "lifecycle_pending": int(pending),
            "lifecycle_sent": int(sent),
        }

    async def positions(self) -> list[PositionView]:
        """The group's stored offsets."""
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                select(OFF.c.topic, OFF.c.kafka_partition, OFF.c.next_offset)
                .where(OFF.c.group_id == self._group)
                .order_by(OFF.c.topic, OFF.c.kafka_partition)
            )
            return [
                PositionView(topic=r.topic, partition=r.kafka_partition, next_offset=r.next_offset)
                for r in rows
            ]

    async def snapshot(self) -> dict[str, Any]:
        """The whole projection in a canonical form (what a replay from scratch must equal).

        Leaves out what says *when* or *how often* the observer worked rather
        than what it saw: judgement times, row versions, lifecycle payloads and
        send times, when an overdue step was announced, and the consumer group's name.
        """
        async with self._engine.connect() as conn:
            events = [dict(r._mapping) for r in await conn.execute(select(E).order_by(E.c.id))]
            flows = [
                {k: v for k, v in r._mapping.items() if k not in ("version", "judged_us")}
                for r in await conn.execute(select(F).order_by(F.c.correlation_id))
            ]
            letters = [dict(r._mapping) for r in await conn.execute(select(D).order_by(D.c.key))]
            rejects = [
                dict(r._mapping)
                for r in await conn.execute(
                    select(R).order_by(R.c.topic, R.c.kafka_partition, R.c.kafka_offset)
                )
            ]
            lifecycle = [
                tuple(r)
                for r in await conn.execute(
                    select(L.c.id, L.c.correlation_id, L.c.type).order_by(L.c.id)
                )
            ]
            waits = [
                {k: v for k, v in r._mapping.items() if k != "overdue_us"}
                for r in await conn.execute(
                    select(schema.waits).order_by(
                        schema.waits.c.correlation_id, schema.waits.c.step
                    )
                )
            ]
            positions = [
                tuple(r)
                for r in await conn.execute(
                    select(OFF.c.topic, OFF.c.kafka_partition, OFF.c.next_offset).order_by(
                        OFF.c.topic, OFF.c.kafka_partition
                    )
                )
            ]
        return {
            "events": events,
            "flows": flows,
            "dead_letters": letters,
            "rejects": rejects,
            "lifecycle": lifecycle,
            "waits": waits,
            "positions": positions,
        }

    async def _publishers(self, conn: Any) -> dict[str, list[str]]:
        rows = await conn.execute(select(P.c.type, P.c.service))
        found: dict[str, list[str]] = defaultdict(list)
        for event_type, service in rows:
            found[event_type].append(service)
        return {t: sorted(s) for t, s in found.items()}

    def _trace_url(self, trace: str) -> str:
        return f"{self._jaeger}/trace/{trace}"

    def _traces(self, events: Sequence[Any]) -> list[TraceView]:
        counted: dict[str, int] = defaultdict(int)
        for e in events:
            if e.trace_id:
                counted[e.trace_id] += 1
        return [
            TraceView(trace_id=t, events=n, jaeger_url=self._trace_url(t))
            for t, n in sorted(counted.items(), key=lambda item: (-item[1], item[0]))
        ]

    def _search_url(self, correlation_id: str, graph: FlowGraph, spec: SagaSpec | None) -> str:
        root = graph.root(spec.start if spec else None)
        query = {
            "tags": json.dumps({"messaging.message.conversation_id": flow_label(correlation_id)})
        }
        if root is not None:
            query = {"service": root.service} | query
        return f"{self._jaeger}/search?{urlencode(query, quote_via=quote)}"


def saga_view(spec: SagaSpec) -> SagaView:
    """The JSON form of a spec."""
    return SagaView(
        name=spec.name,
        description=spec.description,
        start=spec.start,
        success=list(spec.success),
        failure=list(spec.failure),
        steps={k: list(v) for k, v in spec.steps.items()},
        compensations=dict(spec.compensations),
        timeout_seconds=spec.timeout.total_seconds(),
        deadlines_seconds={k: v.total_seconds() for k, v in spec.deadlines.items()},
    )


def percentiles(values: list[float]) -> Percentiles | None:
    """Nearest-rank p50/p90/p99 and max of ``values`` (``None`` if empty)."""
    if not values:
        return None
    ordered = sorted(values)

    def rank(q: float) -> float:
        index = max(0, min(len(ordered) - 1, int(-(-q * len(ordered) // 1)) - 1))
        return round(ordered[index], 3)

    return Percentiles(
        p50=rank(0.5),
        p90=rank(0.9),
        p99=rank(0.99),
        max=round(ordered[-1], 3),
        samples=len(ordered),
    )


def _window(column: Any, since_us: int | None, until_us: int | None) -> list[ColumnElement[bool]]:
    found = []
    if since_us is not None:
        found.append(column >= since_us)
    if until_us is not None:
        found.append(column < until_us)
    return found


def _summary(row: Any, publishers: dict[str, list[str]]) -> FlowSummary:
    ended = row["ended_us"]
    return FlowSummary(
        correlation_id=row["correlation_id"],
        saga=row["saga"],
        status=row["status"],
        root_id=row["root_id"],
        root_type=row["root_type"],
        connected=bool(row["connected"]),
        started_at=from_micros(row["started_us"]),
        last_event_at=from_micros(row["last_us"]),
        ended_at=from_micros(ended) if ended is not None else None,
        deadline=from_micros(row["deadline_us"]) if row["deadline_us"] is not None else None,
        duration_ms=(ended - row["started_us"]) // 1000 if ended is not None else None,
        end_type=row["end_type"],
        event_count=row["event_count"],
        duplicates=row["duplicates"],
        dead_letters=row["dead_letters"],
        orphans=row["orphans"],
        expected=[
            ExpectedStepView(
                **step,
                services=sorted({s for t in step["one_of"] for s in publishers.get(t, [])}),
            )
            for step in json.loads(row["expected"])
        ],
        missing_compensations=json.loads(row["missing"]),
        services=json.loads(row["services"]),
    )


def _events(graph: FlowGraph, rows: Sequence[Any], depth: dict[str, int]) -> list[EventView]:
    # Rows come in (time, id) order, the graph's order.
    nodes = graph.nodes
    out = []
    for row in rows:
        (
            event_id,
            event_type,
            dataversion,
            source,
            service,
            time_us,
            causation_id,
            trace,
            topic,
            partition,
            offset,
            deliveries,
            size,
            joined,
        ) = row
        cause = nodes.get(causation_id) if causation_id is not None else None
        out.append(
            EventView(
                id=event_id,
                type=event_type,
                dataversion=dataversion,
                source=source,
                service=service,
                time=from_micros(time_us),
                causation_id=causation_id,
                cause_type=cause.type if cause else None,
                orphan=causation_id is not None and cause is None,
                depth=depth.get(event_id, 0),
                latency_ms=(time_us - cause.time_us) / 1000 if cause else None,
                trace_id=trace,
                topic=topic,
                partition=partition,
                offset=offset,
                deliveries=deliveries,
                size=size,
                joined=joined.split(",") if joined else [],
            )
        )
    return out


def _graph(graph: FlowGraph, spec: SagaSpec | None, depth: dict[str, int]) -> GraphView:
    start = spec.start if spec else None
    root = graph.root(start)
    return GraphView(
        root_id=root.id if root else None,
        root_type=root.type if root else None,
        connected=graph.is_connected_tree(start),
        roots=[n.id for n in graph.roots],
        orphans=[n.id for n in graph.orphans],
        missing_causes=sorted({n.causation_id for n in graph.orphans if n.causation_id}),
        edges=[EdgeView(cause=c, effect=e) for c, e in graph.edges],
        depth=max(depth.values(), default=0),
    )


def _timings(graph: FlowGraph) -> list[ServiceTiming]:
    by_service: dict[str, list[Node]] = defaultdict(list)
    for node in graph:
        by_service[node.service].append(node)
    out = []
    for service, nodes in sorted(by_service.items()):
        latencies = [
            (n.time_us - graph.nodes[n.causation_id].time_us) / 1000
            for n in nodes
            if n.causation_id is not None and n.causation_id in graph.nodes
        ]
        out.append(
            ServiceTiming(
                service=service,
                events=len(nodes),
                first_at=from_micros(min(n.time_us for n in nodes)),
                last_at=from_micros(max(n.time_us for n in nodes)),
                reactions=len(latencies),
                reaction_ms_total=round(sum(latencies), 3),
                reaction_ms_mean=round(sum(latencies) / len(latencies), 3) if latencies else None,
                reaction_ms_max=round(max(latencies), 3) if latencies else None,
            )
        )
    return out


def _dead_letter(row: Any) -> DeadLetterView:
    return DeadLetterView(
        key=row["key"],
        correlation_id=row["correlation_id"],
        event_id=row["event_id"],
        event_type=row["event_type"],
        error_type=row["error_type"],
        error_message=row["error_message"],
        group=row["group_id"],
        attempts=row["attempts"],
        failed_at=from_micros(row["failed_us"]),
        original_topic=row["original_topic"],
        original_partition=row["original_partition"],
        original_offset=row["original_offset"],
        topic=row["topic"],
        partition=row["kafka_partition"],
        offset=row["kafka_offset"],
        copies=row["copies"],
        id=f"{row['topic']}/{row['kafka_partition']}/{row['kafka_offset']}",
        status=row["status"],
        status_at=from_micros(row["status_us"]) if row["status_us"] is not None else None,
        fingerprint=row["fingerprint"],
        error_frame=row["error_frame"],
    )
