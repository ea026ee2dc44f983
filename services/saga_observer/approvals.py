"""Human checkpoints in the observer: an operator approves or rejects a waiting flow.

``POST /api/flows/{id}/approvals`` needs an operator token (401 without one,
403 with a viewer's; neither changes anything). The decision is checked against
the flow as judged (it must wait at that checkpoint), recorded once per flow and
checkpoint in ``obs_approvals`` and, in the same transaction, as an
``approval.granted`` / ``approval.rejected`` row of the lifecycle outbox, whose
id is derived from the flow and the checkpoint: the relay publishes it at least
once, and consumers see one event. Repeating a decision answers with the first
one (idempotent); contradicting it is a 409. Every request an operator makes is
in the audit log, refused ones too (who, when, what, why, how it ended).

A checkpoint whose deadline passes undecided gets its fallback from the
sweeper, through the same table and outbox (``by_deadline``, actor
``deadline``): an operator's decision and the fallback cannot both win.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal, Protocol

from fastapi import Depends, FastAPI, Path
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Table, select
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.exceptions import HTTPException

from choreokit.events import (
    MAX_ATTRIBUTE_LENGTH,
    ApprovalEscalated,
    ApprovalGranted,
    ApprovalRejected,
    Checkpoint,
    ChoreoError,
    Event,
    Fallback,
)
from choreokit.services.runtime.access import Principal, Role, require
from choreokit.services.saga_observer import schema
from choreokit.services.saga_observer.audit import AuditLog
from choreokit.services.saga_observer.catalog import SagaCatalog
from choreokit.services.saga_observer.judge import Reason
from choreokit.services.saga_observer.lifecycle import Transition, lifecycle_id
from choreokit.services.saga_observer.records import from_micros

A = schema.approvals
F = schema.flows

APPROVAL_MODELS: dict[str, type[Event]] = {
    m.event_info().type: m for m in (ApprovalGranted, ApprovalRejected, ApprovalEscalated)
}
"""What the relay may publish for checkpoints, by type."""

DEADLINE_ACTOR = "deadline"
"""The actor of a decision a checkpoint's deadline made."""

APPROVED, REJECTED = "approved", "rejected"
STANDARD_DECISIONS = (ApprovalGranted.event_info().type, ApprovalRejected.event_info().type)
STANDARD_ESCALATION = ApprovalEscalated.event_info().type


class ApprovalError(ChoreoError):
    """A decision the observer refuses; ``status`` is the HTTP answer."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class DecisionRequest:
    """An operator's decision on one flow's checkpoint."""

    correlation_id: str
    step: str
    approve: bool
    actor: str
    role: str
    reason: str


@dataclass(frozen=True, slots=True)
class Decided:
    """The decision in force after a request (``recorded``: this request made it)."""

    correlation_id: str
    step: str
    decision: str
    actor: str
    role: str
    reason: str
    at_us: int
    event_id: str
    by_deadline: bool
    recorded: bool


def publishable(point: Checkpoint) -> bool:
    """Whether the observer can decide ``point``: it uses the standard approval types."""
    return point.decisions == STANDARD_DECISIONS and point.escalation == STANDARD_ESCALATION


def decision_id(correlation_id: str, step: str) -> str:
    """The ``ce_id`` of the one decision the observer publishes for a flow's checkpoint."""
    return lifecycle_id(correlation_id, f"approval\x1f{step}")


def escalation_id(correlation_id: str, step: str) -> str:
    """The ``ce_id`` of a checkpoint's ``approval.escalated``."""
    return lifecycle_id(correlation_id, f"approval.escalated\x1f{step}")


async def decide(
    conn: AsyncConnection,
    insert: Callable[[Table], Any],
    catalog: SagaCatalog,
    request: DecisionRequest,
    now_us: int,
) -> tuple[Decided, Transition | None]:
    """Record ``request`` if the flow waits at the checkpoint; return the decision in force.

    Raises:
        ApprovalError: No such flow (404), or it does not wait at that checkpoint and
            nobody decided there through the observer (409), or the recorded decision is
            the other one (409).
    """
    cid, step = request.correlation_id, request.step
    wanted = APPROVED if request.approve else REJECTED
    found = await _decision(conn, cid, step)
    if found is not None:
        if found.decision != wanted:
            raise ApprovalError(
                f"checkpoint {step!r} of flow {cid!r} was already {found.decision} by "
                f"{found.actor}; a decision is final",
                status=409,
            )
        return found, None
    flow = (
        await conn.execute(
            select(F.c.saga, F.c.status, F.c.expected).where(F.c.correlation_id == cid)
        )
    ).first()
    if flow is None:
        raise ApprovalError(f"no flow {cid!r} is known", status=404)
    spec = catalog.get(flow.saga) if flow.saga else None
    point = spec.checkpoint_named(step) if spec is not None else None
    waiting = next(
        (
            e
            for e in json.loads(flow.expected)
            if e.get("reason") == Reason.AWAITING_APPROVAL.value and e.get("checkpoint") == step
        ),
        None,
    )
    if point is None or waiting is None or not waiting.get("after_id"):
        raise ApprovalError(
            f"flow {cid!r} (status {flow.status}) does not wait at a checkpoint {step!r}; "
            "GET /api/flows/{id} lists what it waits for",
            status=409,
        )
    if not publishable(point):
        raise ApprovalError(
            f"checkpoint {step!r} is decided by {list(point.decisions)}, which the observer "
            "does not publish: their own producers decide it",
            status=409,
        )
    made = _decided(request, now_us, by_deadline=False)
    change = await _record(conn, insert, made, point, request_id=str(waiting["after_id"]))
    if change is None:  # the fallback or another instance won in between
        again = await _decision(conn, cid, step)
        assert again is not None
        if again.decision != wanted:
            raise ApprovalError(
                f"checkpoint {step!r} of flow {cid!r} was already {again.decision}", status=409
            )
        return again, None
    return made, change


async def fallback(
    conn: AsyncConnection,
    insert: Callable[[Table], Any],
    point: Checkpoint,
    *,
    correlation_id: str,
    request_id: str,
    now_us: int,
) -> Transition | None:
    """The checkpoint's deadline passed: record its fallback (``None``: someone decided first)."""
    if not publishable(point):
        return None
    if point.fallback is Fallback.ESCALATE:
        event = ApprovalEscalated(
            flow=correlation_id[:MAX_ATTRIBUTE_LENGTH],
            step=point.step,
            reason=f"nobody decided within {point.deadline}",
        )
        return Transition(
            id=escalation_id(correlation_id, point.step),
            correlation_id=correlation_id,
            type=point.escalation,
            status="escalated",
            caused_by=request_id,
            payload=event.model_dump_json(),
            created_us=now_us,
        )
    request = DecisionRequest(
        correlation_id=correlation_id,
        step=point.step,
        approve=point.fallback is Fallback.APPROVE,
        actor=DEADLINE_ACTOR,
        role="system",
        reason=f"nobody decided within {point.deadline}: the checkpoint's fallback is to "
        f"{point.fallback.value}",
    )
    made = _decided(request, now_us, by_deadline=True)
    return await _record(conn, insert, made, point, request_id=request_id)


def _decided(request: DecisionRequest, now_us: int, *, by_deadline: bool) -> Decided:
    return Decided(
        correlation_id=request.correlation_id,
        step=request.step,
        decision=APPROVED if request.approve else REJECTED,
        actor=request.actor,
        role=request.role,
        reason=request.reason,
        at_us=now_us,
        event_id=decision_id(request.correlation_id, request.step),
        by_deadline=by_deadline,
        recorded=True,
    )


async def _record(
    conn: AsyncConnection,
    insert: Callable[[Table], Any],
    made: Decided,
    point: Checkpoint,
    *,
    request_id: str,
) -> Transition | None:
    inserted = await conn.execute(
        insert(A)
        .values(
            correlation_id=made.correlation_id,
            step=made.step,
            decision=made.decision,
            actor=made.actor,
            role=made.role,
            reason=made.reason,
            at_us=made.at_us,
            event_id=made.event_id,
            request_id=request_id,
            by_deadline=made.by_deadline,
        )
        .on_conflict_do_nothing()
    )
    if not inserted.rowcount:
        return None
    model = ApprovalGranted if made.decision == APPROVED else ApprovalRejected
    event = model(
        flow=made.correlation_id[:MAX_ATTRIBUTE_LENGTH],
        step=made.step,
        actor=made.actor,
        reason=made.reason,
        by_deadline=made.by_deadline,
    )
    change = Transition(
        id=made.event_id,
        correlation_id=made.correlation_id,
        type=point.granted if made.decision == APPROVED else point.rejected,
        status=made.decision,
        caused_by=request_id,
        payload=event.model_dump_json(),
        created_us=made.at_us,
    )
    await conn.execute(
        insert(schema.lifecycle).on_conflict_do_nothing(),
        [
            {
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
        ],
    )
    return change


async def _decision(conn: AsyncConnection, cid: str, step: str) -> Decided | None:
    row = (await conn.execute(select(A).where(A.c.correlation_id == cid, A.c.step == step))).first()
    if row is None:
        return None
    return Decided(
        correlation_id=row.correlation_id,
        step=row.step,
        decision=row.decision,
        actor=row.actor,
        role=row.role,
        reason=row.reason,
        at_us=row.at_us,
        event_id=row.event_id,
        by_deadline=bool(row.by_deadline),
        recorded=False,
    )


class Desk(Protocol):
    """Where the API takes decisions to (the store, which then wakes the relay)."""

    async def decide(self, request: DecisionRequest) -> Decided:
        """Record the decision, or return the one in force; raises :class:`ApprovalError`."""
        ...


class ApprovalBody(BaseModel):
    """An operator's decision at a checkpoint."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    step: str = Field(
        pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$",
        description="The checkpoint's step name (the flow's awaiting-approval expectation).",
    )
    decision: Literal["approve", "reject"]
    reason: str = Field(min_length=1, max_length=2_000, description="Why: kept in the audit log.")


class ApprovalView(BaseModel):
    """The decision in force at a flow's checkpoint."""

    model_config = ConfigDict(frozen=True)

    correlation_id: str
    step: str
    decision: str = Field(description="approved or rejected")
    actor: str
    role: str
    reason: str
    decided_at: datetime
    event_id: str = Field(description="The ce_id of the approval event published for it.")
    by_deadline: bool
    result: str = Field(description="recorded (this request decided) or already-decided")


def approval_routes(app: FastAPI, desk: Desk | None, audit: AuditLog) -> None:
    """Add ``POST /api/flows/{id}/approvals`` (operators only, audited)."""

    @app.post(
        "/api/flows/{correlation_id:path}/approvals",
        tags=["flows"],
        status_code=200,
        responses={
            401: {"description": "No or an unknown token"},
            403: {"description": "Not an operator"},
            404: {"description": "No such flow"},
            409: {"description": "Not waiting there, or decided otherwise"},
        },
    )
    async def decide_checkpoint(
        correlation_id: Annotated[str, Path(min_length=1, max_length=MAX_ATTRIBUTE_LENGTH)],
        body: ApprovalBody,
        who: Annotated[Principal, Depends(require(Role.OPERATOR))],
    ) -> ApprovalView:
        """Approve or reject a flow waiting at a checkpoint; the flow goes on (or fails).

        Idempotent per flow and checkpoint: repeating the decision answers with the
        first one; the other decision is refused (409).
        """
        if desk is None:
            raise HTTPException(503, "this observer cannot publish decisions")
        action = f"approval.{body.decision}"
        target = f"{correlation_id}#{body.step}"
        request = DecisionRequest(
            correlation_id=correlation_id,
            step=body.step,
            approve=body.decision == "approve",
            actor=who.name,
            role=who.role.value,
            reason=body.reason,
        )
        try:
            made = await desk.decide(request)
        except ApprovalError as exc:
            await audit.record(
                who,
                action=action,
                target=target,
                result="refused",
                reason=body.reason,
                detail={"error": str(exc)},
            )
            raise HTTPException(exc.status, str(exc)) from None
        await audit.record(
            who,
            action=action,
            target=target,
            result="recorded" if made.recorded else "already-decided",
            reason=body.reason,
            detail={"event_id": made.event_id, "decision": made.decision, "by": made.actor},
        )
        return ApprovalView(
            correlation_id=made.correlation_id,
            step=made.step,
            decision=made.decision,
            actor=made.actor,
            role=made.role,
            reason=made.reason,
            decided_at=from_micros(made.at_us),
            event_id=made.event_id,
            by_deadline=made.by_deadline,
            result="recorded" if made.recorded else "already-decided",
        )
