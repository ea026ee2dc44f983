"""Where flows wait, and step deadlines: the ``obs_waits`` rows and ``saga.step_overdue``.

A running or stalled flow *waits at a step* when the spec expects one of the
step's next types after an event of the step's type and none followed yet (the
judgement's ``next-step`` expectations). Each such wait is a row, written in the
transaction that judged the flow; a step with a deadline carries it
(``since + deadline``). The sweeper records one ``saga.step_overdue`` per flow
and step in the lifecycle outbox once the deadline passes, in the transaction
that marks the row: a crash before the commit leaves both undone, a crash after
leaves both done, and the outbox id (derived from the flow and the step) makes a
second recording of the same overdue step a no-op.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Table, and_, delete, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from choreokit.events import SagaSpec
from choreokit.services.saga_observer import schema
from choreokit.services.saga_observer.approvals import fallback
from choreokit.services.saga_observer.bulk import insert_rows
from choreokit.services.saga_observer.catalog import SagaCatalog
from choreokit.services.saga_observer.events import SagaStepOverdue
from choreokit.services.saga_observer.graph import FlowGraph
from choreokit.services.saga_observer.judge import Judgement, Reason, Status
from choreokit.services.saga_observer.lifecycle import Transition, bounded_moment, lifecycle_id
from choreokit.services.saga_observer.records import from_micros

logger = logging.getLogger("choreokit.observer.waits")
W = schema.waits
OVERDUE = SagaStepOverdue.event_info().type
_WAITING = (Status.RUNNING, Status.STALLED)
_STEPS = (Reason.NEXT_STEP, Reason.AWAITING_APPROVAL)
_CHUNK = 400
_WAIT_COLUMNS = (
    "correlation_id",
    "step",
    "saga",
    "after_id",
    "since_us",
    "deadline_us",
    "expected",
    "overdue_us",
)


@dataclass(frozen=True, slots=True)
class Wait:
    """One step a flow waits at.

    Attributes:
        step: The type of the event the next step must follow.
        after_id: That event's id.
        since_us: That event's time.
        deadline_us: When the next step is due (``None``: the step has no deadline).
        expected: The types one of which is expected.
    """

    step: str
    after_id: str
    since_us: int
    deadline_us: int | None
    expected: tuple[str, ...]


def waits_of(graph: FlowGraph, verdict: Judgement, spec: SagaSpec | None) -> list[Wait]:
    """The steps a judged flow waits at (none unless it is running or stalled)."""
    if spec is None or verdict.status not in _WAITING:
        return []
    found: dict[str, Wait] = {}
    for expectation in verdict.expected:
        if expectation.reason not in _STEPS or expectation.after_id is None:
            continue
        node = graph.nodes.get(expectation.after_id)
        if node is None or node.type in found:  # the earliest wait at a step counts
            continue
        deadline = spec.deadline_of(node.type)
        found[node.type] = Wait(
            step=node.type,
            after_id=node.id,
            since_us=node.time_us,
            deadline_us=(
                node.time_us + int(deadline.total_seconds() * 1_000_000) if deadline else None
            ),
            expected=expectation.one_of,
        )
    return list(found.values())


async def record_waits(
    conn: AsyncConnection, judged: Mapping[str, tuple[str | None, Sequence[Wait]]]
) -> None:
    """Make the rows of the flows ``judged`` (flow -> saga and its waits) what they are now.

    A row that stays (same flow, step and event) keeps its overdue mark.
    """
    cids = sorted(judged)
    for start in range(0, len(cids), _CHUNK):
        chunk = cids[start : start + _CHUNK]
        rows = await conn.execute(
            select(W.c.correlation_id, W.c.step, W.c.after_id).where(W.c.correlation_id.in_(chunk))
        )
        existing = {(r.correlation_id, r.step): r.after_id for r in rows}
        wanted = {(cid, w.step): (judged[cid][0], w) for cid in chunk for w in judged[cid][1]}
        gone = [
            key
            for key, after in existing.items()
            if key not in wanted or wanted[key][1].after_id != after
        ]
        if gone:
            await conn.execute(delete(W).where(tuple_(W.c.correlation_id, W.c.step).in_(gone)))
        fresh = [
            (
                cid,
                w.step,
                saga or "",
                w.after_id,
                w.since_us,
                w.deadline_us,
                json.dumps(list(w.expected)),
                None,
            )
            for (cid, _step), (saga, w) in sorted(wanted.items())
            if existing.get((cid, w.step)) != w.after_id
        ]
        await insert_rows(conn, W, _WAIT_COLUMNS, fresh)


async def record_overdue(
    conn: AsyncConnection,
    insert: Callable[[Table], Any],
    now_us: int,
    limit: int,
    *,
    lock: bool,
    catalog: SagaCatalog | None = None,
) -> list[Transition]:
    """Record ``saga.step_overdue`` for up to ``limit`` waits past their deadline; mark them.

    A wait at a checkpoint also gets the checkpoint's fallback (a decision, or an
    escalation), unless someone decided first. With ``lock`` (PostgreSQL), rows
    another instance holds are skipped.
    """
    stmt = (
        select(W)
        .where(W.c.overdue_us.is_(None), W.c.deadline_us <= now_us)
        .order_by(W.c.deadline_us, W.c.correlation_id, W.c.step)
        .limit(limit)
    )
    if lock:
        stmt = stmt.with_for_update(skip_locked=True)
    rows = (await conn.execute(stmt)).all()
    if not rows:
        return []
    found = []
    for row in rows:
        try:
            found.append(_overdue(row, now_us))
        except (ValidationError, ValueError) as exc:  # a stored value no event may carry
            logger.warning(
                "cannot announce the overdue step %r of a flow (%s); marking it announced",
                row.step[:80],
                type(exc).__name__,
            )
    if found:
        await conn.execute(
            insert(schema.lifecycle).on_conflict_do_nothing(), [_outbox(t) for t in found]
        )
    for row in rows:
        spec = catalog.get(row.saga) if catalog is not None and row.saga else None
        point = spec.checkpoint_of(row.step) if spec is not None else None
        if point is None:
            continue
        change = await fallback(
            conn,
            insert,
            point,
            correlation_id=row.correlation_id,
            request_id=row.after_id,
            now_us=now_us,
        )
        if change is not None and change.status == "escalated":
            await conn.execute(insert(schema.lifecycle).on_conflict_do_nothing(), [_outbox(change)])
        if change is not None:
            found.append(change)
    keys = [(r.correlation_id, r.step) for r in rows]
    for start in range(0, len(keys), _CHUNK):
        await conn.execute(
            update(W)
            .where(tuple_(W.c.correlation_id, W.c.step).in_(keys[start : start + _CHUNK]))
            .values(overdue_us=now_us)
        )
    return found


def overdue_id(correlation_id: str, step: str) -> str:
    """The ``ce_id`` of the flow's ``saga.step_overdue`` for ``step``: one per flow and step."""
    return lifecycle_id(correlation_id, f"{OVERDUE}\x1f{step}")


def _overdue(row: Any, now_us: int) -> Transition:
    expected = json.loads(row.expected)
    event = SagaStepOverdue(
        saga=row.saga or "-",
        step=row.step,
        waiting_event_id=row.after_id,
        waiting_event_type=row.step,
        waiting_since=bounded_moment(row.since_us),
        deadline=from_micros(row.deadline_us),
        expected=tuple(expected[:256]),
    )
    return Transition(
        id=overdue_id(row.correlation_id, row.step),
        correlation_id=row.correlation_id,
        type=OVERDUE,
        status="step_overdue",
        caused_by=row.after_id,
        payload=event.model_dump_json(),
        created_us=now_us,
    )


def _outbox(change: Transition) -> dict[str, Any]:
    return {
        "id": change.id,
        "correlation_id": change.correlation_id,
        "type": change.type,
        "status": change.status,
        "caused_by": change.caused_by,
        "payload": change.payload,
        "created_us": change.created_us,
        "sent_us": None,
        "observed": False,
    }


def waiting_condition(correlation_id: Any, *, step: str | None, since_before_us: int | None) -> Any:
    """SQL: the flow ``correlation_id`` waits (at ``step``) since before ``since_before_us``."""
    conditions = [W.c.correlation_id == correlation_id]
    if step is not None:
        conditions.append(W.c.step == step)
    if since_before_us is not None:
        conditions.append(W.c.since_us <= since_before_us)
    return and_(*conditions)
