"""The observer's audit log: every write action, who took it, when, why, and its result."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from choreokit.services.runtime.access import Principal
from choreokit.services.saga_observer.schema import audit_log

REASON_LIMIT = 2_000
"""Longest reason kept (longer ones are cut)."""


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One recorded action."""

    id: int
    at_us: int
    actor: str
    role: str
    action: str
    target: str
    reason: str
    detail: dict[str, Any]
    result: str


class AuditLog:
    """Records and lists write actions, in the observer's database.

    Args:
        writer: The engine writes go to.
        reader: The engine reads come from.
        clock: Microseconds since the epoch, now.
    """

    def __init__(self, writer: AsyncEngine, reader: AsyncEngine, clock: Callable[[], int]) -> None:
        self._writer = writer
        self._reader = reader
        self._clock = clock

    async def record(
        self,
        principal: Principal,
        *,
        action: str,
        target: str,
        result: str,
        reason: str = "",
        detail: dict[str, Any] | None = None,
    ) -> int:
        """Append one entry; returns its id."""
        async with self._writer.begin() as conn:
            inserted = await conn.execute(
                insert(audit_log).values(
                    at_us=self._clock(),
                    actor=principal.name[:256],
                    role=principal.role.value,
                    action=action[:64],
                    target=target[:1024],
                    reason=reason[:REASON_LIMIT],
                    detail=json.dumps(detail or {}, sort_keys=True, default=str),
                    result=result[:32],
                )
            )
            key = inserted.inserted_primary_key
            return int(key[0]) if key else 0

    async def entries(self, *, limit: int = 50, offset: int = 0) -> tuple[int, list[AuditEntry]]:
        """The newest entries first, and how many there are in all."""
        async with self._reader.connect() as conn:
            total = int(
                (await conn.execute(select(func.count()).select_from(audit_log))).scalar_one()
            )
            rows = await conn.execute(
                select(audit_log).order_by(audit_log.c.id.desc()).limit(limit).offset(offset)
            )
            return total, [
                AuditEntry(
                    id=row.id,
                    at_us=row.at_us,
                    actor=row.actor,
                    role=row.role,
                    action=row.action,
                    target=row.target,
                    reason=row.reason,
                    detail=json.loads(row.detail),
                    result=row.result,
                )
                for row in rows
            ]
