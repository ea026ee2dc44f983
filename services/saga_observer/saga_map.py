"""The live saga map and failure patterns: a spec drawn as a graph, with figures from the store.

The graph comes from the spec alone (start, steps, success and failure ends,
compensations). The figures come from what the store already keeps: events and
their causation (passed, transitions, time between steps), the flows' rows, and
``obs_waits`` (who waits where now, and past which deadline). Everything is
counted over the flows of the saga *started* in the window, the same window the
flow list's ``since``/``until`` take, so a click on a figure lists exactly its flows.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import ColumnElement, and_, case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from choreokit.events import SagaSpec
from choreokit.events.dlq import normalise_message
from choreokit.services.saga_observer import schema
from choreokit.services.saga_observer.judge import Status
from choreokit.services.saga_observer.records import from_micros
from choreokit.services.saga_observer.views import (
    FailurePatternsView,
    FailurePatternView,
    LatencyView,
    MapEdge,
    MapNode,
    SagaMapView,
    WaitingView,
)

E, F, D, W = schema.events, schema.flows, schema.dead_letters, schema.waits
DS = schema.dead_letter_status
LATENCY_SAMPLE = 50_000
PATTERN_SCAN = 100_000
"""Most recent stalled and failed flows grouped into failure patterns."""
FAILURE_STATUSES = (
    Status.STALLED,
    Status.FAILED,
    Status.FAILED_UNCOMPENSATED,
    Status.COMPENSATED,
)
"""The statuses failure patterns group by default."""


@dataclass(frozen=True, slots=True)
class SpecNode:
    """An event type of a spec, as drawn."""

    type: str
    kind: str
    depth: int


@dataclass(frozen=True, slots=True)
class SpecEdge:
    """A transition a spec allows."""

    source: str
    target: str
    kind: str


@dataclass(frozen=True, slots=True)
class SpecGraph:
    """A spec as a graph: its event types and the transitions between them."""

    nodes: tuple[SpecNode, ...]
    edges: tuple[SpecEdge, ...]


def spec_graph(spec: SagaSpec) -> SpecGraph:
    """The graph of ``spec``: start, steps, success and failure ends, compensations.

    Steps are edges from a type to each type that may follow it; each failure end
    has an edge to each compensation (that is what causes them: the failure is
    announced, and the services undo what they did). ``depth`` is the longest
    distance from the start, for drawing in columns.
    """
    kinds: dict[str, str] = {spec.start: "start"}
    edges: dict[tuple[str, str], str] = {}
    for after, following in spec.steps.items():
        for target in following:
            edges.setdefault((after, target), "step")
    compensations = list(dict.fromkeys(spec.compensations.values()))
    for end in spec.failure:
        for required in compensations:
            edges.setdefault((end, required), "compensation")
    for end in spec.success:
        kinds[end] = "success"
    for end in spec.failure:
        kinds[end] = "failure"
    for required in compensations:
        kinds.setdefault(required, "compensation")
    ordered = [spec.start]
    for source, target in edges:
        ordered += [source, target]
    ordered += [*spec.success, *spec.failure, *compensations, *spec.compensations]
    types = list(dict.fromkeys(ordered))
    depth = _depths(spec.start, edges)
    reached = max(depth.values(), default=0)
    return SpecGraph(
        nodes=tuple(SpecNode(t, kinds.get(t, "step"), depth.get(t, reached + 1)) for t in types),
        edges=tuple(SpecEdge(s, t, kind) for (s, t), kind in edges.items()),
    )


def _depths(start: str, edges: Iterable[tuple[str, str]]) -> dict[str, int]:
    """The longest distance from ``start`` (a step is drawn right of every step before it).

    A cycle cannot push a type further than there are types.
    """
    pairs = list(edges)
    depth = {start: 0}
    limit = len({t for pair in pairs for t in pair}) + 1
    for _ in range(limit):
        changed = False
        for source, target in pairs:
            further = depth[source] + 1 if source in depth else -1
            if depth.get(target, -1) < further <= limit:
                depth[target] = further
                changed = True
        if not changed:
            break
    return depth


def latency(values: list[float]) -> LatencyView | None:
    """Nearest-rank p50/p95 and max of ``values`` in milliseconds (``None`` if empty)."""
    if not values:
        return None
    ordered = sorted(values)

    def rank(q: float) -> float:
        index = max(0, min(len(ordered) - 1, -int(-q * len(ordered) // 1) - 1))
        return round(ordered[index], 3)

    return LatencyView(
        p50=rank(0.5), p95=rank(0.95), max=round(ordered[-1], 3), samples=len(ordered)
    )


class SagaMaps:
    """The saga map and failure patterns, read from the observer's database.

    Args:
        engine: Where to read.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def saga_map(
        self, spec: SagaSpec, *, since_us: int | None, until_us: int | None, now_us: int
    ) -> SagaMapView:
        """``spec`` as a graph, with the figures of its flows started in the window."""
        graph = spec_graph(spec)
        types = [n.type for n in graph.nodes]
        window = _flows_in(spec.name, since_us, until_us)
        cause = E.alias("cause")
        caused = E.join(cause, cause.c.id == E.c.causation_id).join(
            F, F.c.correlation_id == E.c.correlation_id
        )
        async with self._engine.connect() as conn:
            flows = (
                await conn.execute(select(func.count()).select_from(F).where(*window))
            ).scalar_one()
            passed: dict[str, int] = dict(
                (
                    await conn.execute(
                        select(E.c.type, func.count(func.distinct(E.c.correlation_id)))
                        .select_from(E.join(F, F.c.correlation_id == E.c.correlation_id))
                        .where(*window, E.c.type.in_(types))
                        .group_by(E.c.type)
                    )
                ).all()
            )
            taken = (
                await conn.execute(
                    select(cause.c.type, E.c.type, func.count(func.distinct(E.c.correlation_id)))
                    .select_from(caused)
                    .where(*window, E.c.type.in_(types), cause.c.type.in_(types))
                    .group_by(cause.c.type, E.c.type)
                )
            ).all()
            sample = (
                await conn.execute(
                    select(cause.c.type, E.c.type, E.c.time_us - cause.c.time_us)
                    .select_from(caused)
                    .where(*window, E.c.type.in_(types), cause.c.type.in_(types))
                    .order_by(E.c.time_us.desc())
                    .limit(LATENCY_SAMPLE)
                )
            ).all()
            waiting = (
                await conn.execute(
                    select(
                        W.c.step,
                        F.c.status,
                        func.count(),
                        func.sum(case((W.c.deadline_us <= now_us, 1), else_=0)),
                    )
                    .select_from(W.join(F, F.c.correlation_id == W.c.correlation_id))
                    .where(*window)
                    .group_by(W.c.step, F.c.status)
                )
            ).all()
        counts = {(s, t): int(n) for s, t, n in taken}
        latencies: dict[tuple[str, str], list[float]] = defaultdict(list)
        for source, target, micros_ in sample:
            latencies[(source, target)].append(micros_ / 1000)
        waits: dict[str, Counter[str]] = defaultdict(Counter)
        for step, status, count, overdue in waiting:
            waits[step][status] += int(count)
            waits[step]["overdue"] += int(overdue or 0)
        base = {"saga": spec.name} | _window_params(since_us, until_us)
        known = {(e.source, e.target) for e in graph.edges}
        edges = [
            *((e.source, e.target, e.kind) for e in graph.edges),
            *((s, t, "unexpected") for (s, t) in sorted(counts) if (s, t) not in known),
        ]
        return SagaMapView(
            saga=spec.name,
            since=from_micros(since_us) if since_us is not None else None,
            until=from_micros(until_us) if until_us is not None else None,
            now=from_micros(now_us),
            flows=int(flows),
            nodes=[
                MapNode(
                    id=n.type,
                    kind=n.kind,
                    depth=n.depth,
                    deadline_seconds=(
                        d.total_seconds() if (d := spec.deadline_of(n.type)) is not None else None
                    ),
                    passed=int(passed.get(n.type, 0)),
                    waiting=WaitingView(
                        running=waits[n.type][Status.RUNNING.value],
                        stalled=waits[n.type][Status.STALLED.value],
                        overdue=waits[n.type]["overdue"],
                    ),
                    flows_url=_flows_url(base | {"event_type": n.type}),
                    waiting_url=_flows_url(base | {"waiting_at": n.type}),
                )
                for n in graph.nodes
            ],
            edges=[
                MapEdge(
                    source=s,
                    target=t,
                    kind=kind,
                    count=counts.get((s, t), 0),
                    latency_ms=latency(latencies.get((s, t), [])),
                    flows_url=_flows_url(base | {"cause_type": s, "event_type": t}),
                )
                for s, t, kind in edges
            ],
            latency_sample=LATENCY_SAMPLE,
        )

    async def failure_patterns(
        self,
        spec: SagaSpec,
        *,
        statuses: tuple[Status, ...] = FAILURE_STATUSES,
        since_us: int | None = None,
        until_us: int | None = None,
        limit: int = 50,
    ) -> FailurePatternsView:
        """The saga's stalled and failed flows grouped by last step and error fingerprint.

        A flow's *last step* is the type of its latest event; its fingerprint is
        that of its latest open (not resolved, not purged) dead letter, if any.
        The most recent :data:`PATTERN_SCAN` flows are grouped.
        """
        open_letter = or_(DS.c.status.is_(None), DS.c.status.notin_(("resolved", "purged")))
        letters = D.outerjoin(
            DS,
            and_(
                DS.c.topic == D.c.topic,
                DS.c.kafka_partition == D.c.kafka_partition,
                DS.c.kafka_offset == D.c.kafka_offset,
            ),
        )
        last_type = (
            select(E.c.type)
            .where(E.c.correlation_id == F.c.correlation_id)
            .order_by(E.c.time_us.desc(), E.c.id.desc())
            .limit(1)
            .scalar_subquery()
        )
        last_letter = (
            select(D.c.fingerprint)
            .select_from(letters)
            .where(D.c.correlation_id == F.c.correlation_id, open_letter)
            .order_by(D.c.failed_us.desc(), D.c.key.desc())
            .limit(1)
            .scalar_subquery()
        )
        where = [
            *_flows_in(spec.name, since_us, until_us),
            F.c.status.in_([s.value for s in statuses]),
        ]
        async with self._engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(
                        F.c.correlation_id,
                        F.c.status,
                        last_type.label("last_type"),
                        last_letter.label("fingerprint"),
                    )
                    .where(*where)
                    .order_by(F.c.started_us.desc(), F.c.correlation_id)
                    .limit(PATTERN_SCAN)
                )
            ).all()
            prints = sorted({r.fingerprint for r in rows if r.fingerprint})
            described: dict[str, tuple[str, str]] = {}
            for start in range(0, len(prints), 500):
                found = await conn.execute(
                    select(D.c.fingerprint, func.min(D.c.error_type), func.min(D.c.error_message))
                    .where(D.c.fingerprint.in_(prints[start : start + 500]))
                    .group_by(D.c.fingerprint)
                )
                described.update({fp: (error, message) for fp, error, message in found})
        groups: dict[tuple[str, str | None], Counter[str]] = defaultdict(Counter)
        examples: dict[tuple[str, str | None], str] = {}
        for r in rows:
            key = (r.last_type or "", r.fingerprint or None)
            groups[key][r.status] += 1
            examples.setdefault(key, r.correlation_id)
        ordered = sorted(
            groups.items(), key=lambda item: (-item[1].total(), item[0][0], item[0][1] or "")
        )
        base = {"saga": spec.name} | _window_params(since_us, until_us)
        patterns = []
        for (step, fingerprint), by_status in ordered[:limit]:
            error, message = described.get(fingerprint or "", (None, None))
            query: dict[str, Any] = base | {"status": sorted(by_status)}
            if fingerprint:
                query["dead_letter_fingerprint"] = fingerprint
            patterns.append(
                FailurePatternView(
                    last_step=step,
                    fingerprint=fingerprint,
                    error_type=error,
                    message=normalise_message(message) if message else None,
                    count=by_status.total(),
                    by_status=dict(sorted(by_status.items())),
                    example=examples[(step, fingerprint)],
                    flows_url=_flows_url(query),
                )
            )
        return FailurePatternsView(
            saga=spec.name,
            total=len(rows),
            statuses=[s.value for s in statuses],
            patterns=patterns,
        )


def _flows_in(saga: str, since_us: int | None, until_us: int | None) -> list[ColumnElement[bool]]:
    found: list[ColumnElement[bool]] = [F.c.saga == saga]
    if since_us is not None:
        found.append(F.c.started_us >= since_us)
    if until_us is not None:
        found.append(F.c.started_us < until_us)
    return found


def _window_params(since_us: int | None, until_us: int | None) -> dict[str, str]:
    found = {}
    if since_us is not None:
        found["since"] = from_micros(since_us).isoformat()
    if until_us is not None:
        found["until"] = from_micros(until_us).isoformat()
    return found


def _flows_url(query: dict[str, Any]) -> str:
    return "/api/flows?" + urlencode(query, doseq=True)
