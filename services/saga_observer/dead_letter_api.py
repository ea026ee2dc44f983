"""Dead-letter operations over HTTP: failure groups and replay to the group that failed.

Replaying is a write action: it needs an operator token (``require(Role.OPERATOR)``
of the runtime's access layer). Every replay is recorded twice: in the
``choreo.dlq.audit`` topic (where ``choreo dlq`` and every observer see it, and
where the group reports the outcome) and in the observer's own audit log.
"""

from __future__ import annotations

import json
from typing import Annotated, Protocol

from fastapi import Depends, FastAPI, Path, Query
from starlette.exceptions import HTTPException

from choreokit.events import BrokerUnavailableError
from choreokit.events.dlq import DeadLetterNotFoundError, ReplayRefusedError, ReplayResult
from choreokit.services.runtime.access import Principal, Role, require
from choreokit.services.saga_observer.audit import AuditLog
from choreokit.services.saga_observer.queries import Queries
from choreokit.services.saga_observer.views import FailureGroupView, ReplayRequest, ReplayView


class Replayer(Protocol):
    """Sends a dead letter back to its group (the observer's Kafka side)."""

    async def replay(
        self,
        dead_letter_id: str,
        *,
        data: bytes | None,
        to_topic: str | None,
        force: bool,
        operator: str,
    ) -> ReplayResult:
        """Replay one dead letter, audited under ``operator``."""
        ...


def dead_letter_routes(
    app: FastAPI, queries: Queries, replayer: Replayer | None, audit: AuditLog
) -> None:
    """Add ``GET /api/dead-letters/groups`` and ``POST /api/dead-letters/.../replay``."""

    @app.get("/api/dead-letters/groups", tags=["records"])
    async def dead_letter_groups(
        limit: Annotated[int, Query(ge=1, le=500, description="Most groups listed.")] = 50,
    ) -> list[FailureGroupView]:
        """Open dead letters grouped by error type, normalised message and top frame."""
        return await queries.dead_letter_groups(limit=limit)

    @app.post(
        "/api/dead-letters/{topic}/{partition}/{offset}/replay",
        tags=["records"],
        responses={404: {"description": "No such dead letter"}, 422: {"description": "Refused"}},
    )
    async def replay_dead_letter(
        topic: Annotated[str, Path(max_length=249, pattern=r"^[A-Za-z0-9._-]+\.dlq$")],
        partition: Annotated[int, Path(ge=0)],
        offset: Annotated[int, Path(ge=0)],
        who: Annotated[Principal, Depends(require(Role.OPERATOR))],
        request: ReplayRequest | None = None,
    ) -> ReplayView:
        """Send one dead letter back to the one consumer group that failed on it.

        Other groups on the topic skip it. The observer marks the dead letter
        resolved once the group reports it handled (through the audit topic).
        """
        if replayer is None:
            raise HTTPException(503, "this observer cannot replay: it has no Kafka producer")
        body = request or ReplayRequest()
        dead_letter_id = f"{topic}/{partition}/{offset}"
        detail = {"edited": body.data is not None, "to_topic": body.to_topic, "force": body.force}
        try:
            result = await replayer.replay(
                dead_letter_id,
                data=json.dumps(body.data).encode() if body.data is not None else None,
                to_topic=body.to_topic,
                force=body.force,
                operator=who.name,
            )
        except (DeadLetterNotFoundError, ReplayRefusedError, BrokerUnavailableError) as exc:
            status = {DeadLetterNotFoundError: 404, ReplayRefusedError: 422}.get(type(exc), 503)
            await audit.record(
                who,
                action="dlq.replay",
                target=dead_letter_id,
                result="refused",
                detail={**detail, "error": str(exc)},
            )
            raise HTTPException(status, str(exc)) from None
        await audit.record(
            who,
            action="dlq.replay",
            target=dead_letter_id,
            result=result.result,
            detail={**detail, "replay_id": result.replay_id, "group": result.group},
        )
        return ReplayView(
            dead_letter=result.dead_letter,
            replay_id=result.replay_id,
            topic=result.topic,
            group=result.group,
            result=result.result,
            error=result.error,
            operator=who.name,
        )
