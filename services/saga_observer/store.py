"""Writing the projection: a batch of records, the flows it touches, and its offsets, at once.

Everything a batch changes (new events, duplicate counts, dead letters,
rejected records, the re-judged flows, the lifecycle outbox) and the
partitions' next offsets are written in **one transaction**. The consumer
seeks to these stored offsets whenever it is assigned a partition, so after a
crash at any moment the database holds exactly the effect of the records
before the stored offsets: the same state a replay from scratch reaches.

Writers fence each other on the stored offsets: a batch applies only if every
partition's stored offset is still the one its reader started from, so a
member that lost its partitions (or a paused zombie) cannot apply a batch twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections import OrderedDict, defaultdict
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiokafka import TopicPartition
from sqlalchemy import Table, and_, bindparam, case, or_, select, tuple_, update
from sqlalchemy import event as sqlalchemy_event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from choreokit.events import ChoreoError
from choreokit.services.runtime.database import create_engine
from choreokit.services.saga_observer import schema
from choreokit.services.saga_observer.approvals import (
    APPROVAL_MODELS,
    Decided,
    DecisionRequest,
    decide,
)
from choreokit.services.saga_observer.bulk import insert_rows, update_rows
from choreokit.services.saga_observer.catalog import SagaCatalog
from choreokit.services.saga_observer.graph import FlowGraph, Node
from choreokit.services.saga_observer.judge import (
    Expectation,
    Judgement,
    Refusal,
    Status,
    judge,
)
from choreokit.services.saga_observer.lifecycle import Pending, Transition, transition
from choreokit.services.saga_observer.records import (
    Position,
    Seen,
    SeenAudit,
    SeenDeadLetter,
    SeenEvent,
    SeenLifecycle,
    SeenReject,
    micros,
    service_of,
    trace_id,
)
from choreokit.services.saga_observer.waits import Wait, record_overdue, record_waits, waits_of

logger = logging.getLogger("choreokit.observer.store")

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
_CHUNK = 500
T = TypeVar("T")
_SETTLED = ("resolved", "purged")
"""Dead letters that no longer count against their flow."""
_STATUS_OF = {
    ("replay", "sent"): "replayed",
    ("outcome", "handled"): "resolved",
    ("outcome", "failed"): "failed",
    ("purge", None): "purged",
}


class _RolledBackError(Exception):
    """Ends a dry run's transaction: everything it wrote is rolled back."""


class FencedError(ChoreoError):
    """Another reader moved a partition's stored offset; the batch was not applied.

    The consumer seeks back to the stored offsets and reads on from there.
    """

    retriable = True

    def __init__(self, partition: TopicPartition, expected: int | None) -> None:
        self.partition = partition
        self.expected = expected
        super().__init__(
            f"{partition.topic}[{partition.partition}] was not at offset {expected} any more: "
            "another observer instance handled it; re-reading from the stored offset"
        )


@dataclass(frozen=True, slots=True)
class Advance:
    """A partition's stored offset before and after a batch.

    Attributes:
        expected: The stored next offset the batch was read from (``None``: none stored).
        next: The next offset after the batch.
    """

    expected: int | None
    next: int


@dataclass(slots=True)
class _Cached:
    """An open flow's events (its graph) as of ``version`` of its row."""

    version: int
    graph: FlowGraph
    duplicates: int


@dataclass
class _Fresh:
    """A batch's new events and extra copies, by flow."""

    nodes: dict[str, list[Node]] = field(default_factory=lambda: defaultdict(list))
    duplicates: dict[str, int] = field(default_factory=lambda: defaultdict(int))


@dataclass
class Applied:
    """What one batch changed."""

    events: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    audits: int = 0
    rejects: int = 0
    lifecycle: int = 0
    flows: int = 0
    transitions: list[Transition] = field(default_factory=list)


class Store:
    """The observer's database, on the write side.

    Args:
        engine: Where to write (SQLite: one writer at a time per process, and the
            engine should begin transactions with ``BEGIN IMMEDIATE``; PostgreSQL:
            batches of disjoint partitions may apply at once, see :attr:`concurrent`).
        catalog: The saga specs flows are judged by.
        group: The consumer group whose offsets are stored.
        cache_flows: How many open flows' events to keep in memory between batches
            (ended flows are never kept): memory is bounded by open flows, not events.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        catalog: SagaCatalog,
        *,
        group: str,
        cache_flows: int = 10_000,
    ) -> None:
        self._engine = engine
        self._catalog = catalog
        self._group = group
        self._cache: OrderedDict[str, _Cached] = OrderedDict()
        self._cache_limit = cache_flows
        self._lock = asyncio.Lock()
        self._postgres = engine.dialect.name == "postgresql"

    @property
    def concurrent(self) -> bool:
        """Whether batches of disjoint partitions may be applied at once (PostgreSQL)."""
        return self._postgres

    async def migrate(self) -> tuple[int, int]:
        """Create or upgrade the schema; return the versions before and after."""
        async with self._lock, self._engine.begin() as conn:
            return await schema.migrate(conn)

    async def positions(self) -> dict[TopicPartition, int]:
        """The stored next offset of every partition the group has read."""
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                select(OFF.c.topic, OFF.c.kafka_partition, OFF.c.next_offset).where(
                    OFF.c.group_id == self._group
                )
            )
            return {TopicPartition(r.topic, r.kafka_partition): r.next_offset for r in rows}

    async def check(self, seen: Seen, now_us: int) -> None:
        """Record ``seen`` alone and roll back: raises what :meth:`apply` would raise for it.

        Ingest uses it to find the records of a failing batch that fail on their
        own (their content), so those are rejected one by one.
        """
        with contextlib.suppress(_RolledBackError):
            await self.apply([seen], {}, now_us, dry_run=True)

    async def apply(
        self,
        seen: Sequence[Seen],
        advance: Mapping[TopicPartition, Advance],
        now_us: int,
        *,
        dry_run: bool = False,
    ) -> Applied:
        """Record a batch and move its partitions' offsets, in one transaction.

        Raises:
            FencedError: A partition's stored offset is not ``advance[tp].expected``;
                nothing was written.
        """
        applied = Applied()
        # PostgreSQL: batches of disjoint partitions apply at once, each on its own
        # connection; the fence's and the flows' row locks order them. SQLite: one writer.
        serial = contextlib.nullcontext() if self._postgres else self._lock
        async with serial, self._engine.begin() as conn:
            await self._fence(conn, advance)
            touched, created, fresh = await self._record_events(
                conn, [s for s in seen if isinstance(s, SeenEvent)], applied
            )
            touched |= await self._record_dead_letters(
                conn, [s for s in seen if isinstance(s, SeenDeadLetter)], applied
            )
            touched |= await self._record_audits(
                conn, [s for s in seen if isinstance(s, SeenAudit)], applied
            )
            await self._record_rejects(
                conn, [s for s in seen if isinstance(s, SeenReject)], applied
            )
            await self._record_lifecycle(
                conn, [s for s in seen if isinstance(s, SeenLifecycle)], applied
            )
            applied.transitions, remembered = await self._rejudge(
                conn, touched, created, now_us, fresh
            )
            applied.flows = len(touched)
            if dry_run:
                raise _RolledBackError
        self._remember(remembered)
        return applied

    async def sweep(self, now_us: int, limit: int = 500) -> tuple[int, list[Transition]]:
        """Judge again running flows whose deadline passed (they stall, or fail uncompensated).

        Returns:
            How many flows were judged, and the transitions that made.
        """
        async with self._lock, self._engine.begin() as conn:
            stmt = (
                select(F.c.correlation_id)
                .where(F.c.status == "running", F.c.deadline_us <= now_us)
                .order_by(F.c.deadline_us)
                .limit(limit)
            )
            if self._postgres:
                stmt = stmt.with_for_update(skip_locked=True)
            due = set((await conn.execute(stmt)).scalars())
            if not due:
                return 0, []
            transitions, remembered = await self._rejudge(conn, due, set(), now_us, _Fresh())
        self._remember(remembered)
        return len(due), transitions

    async def rejudge_sagas(
        self, names: Collection[str], now_us: int, limit: int = 500
    ) -> tuple[int, list[Transition]]:
        """Judge again the open flows of the sagas ``names`` and every untracked flow.

        Called when specs changed (a reloaded spec file): a flow that has not ended
        (running, stalled, failed-uncompensated) or that no spec knew gets the
        verdict of the new specs; an ended flow keeps the verdict it got.

        Returns:
            How many flows were judged, and the transitions that made.
        """
        total, after = 0, ""
        transitions: list[Transition] = []
        ended = [s.value for s in Status if s.final]
        while True:
            async with self._lock, self._engine.begin() as conn:
                stmt = (
                    select(F.c.correlation_id)
                    .where(
                        F.c.correlation_id > after,
                        F.c.status.not_in(ended),
                        or_(F.c.saga.in_(sorted(names)), F.c.saga.is_(None)),
                    )
                    .order_by(F.c.correlation_id)
                    .limit(limit)
                )
                due = list((await conn.execute(stmt)).scalars())
                if not due:
                    return total, transitions
                changes, remembered = await self._rejudge(conn, set(due), set(), now_us, _Fresh())
            self._remember(remembered)
            total += len(due)
            transitions += changes
            after = due[-1]

    async def sweep_steps(self, now_us: int, limit: int = 500) -> list[Transition]:
        """Record ``saga.step_overdue`` for waits whose step deadline passed (once each)."""
        async with self._lock, self._engine.begin() as conn:
            return await record_overdue(
                conn, self._insert, now_us, limit, lock=self._postgres, catalog=self._catalog
            )

    async def decide(self, request: DecisionRequest, now_us: int) -> Decided:
        """Record an operator's decision at a checkpoint (see ``approvals``).

        Returns the decision in force, and whether this request recorded it.

        Raises:
            ApprovalError: The flow is unknown, does not wait there, or was decided otherwise.
        """
        async with self._lock, self._engine.begin() as conn:
            made, _change = await decide(conn, self._insert, self._catalog, request, now_us)
        return made

    async def claim(self, owner: str, now_us: int, lease_us: int, limit: int) -> list[Pending]:
        """Claim up to ``limit`` unsent lifecycle rows that no live claim holds."""
        async with self._lock, self._engine.begin() as conn:
            stmt = (
                select(
                    L.c.id, L.c.correlation_id, L.c.type, L.c.caused_by, L.c.payload, L.c.created_us
                )
                .where(
                    L.c.sent_us.is_(None),
                    or_(L.c.claimed_until_us.is_(None), L.c.claimed_until_us < now_us),
                )
                .order_by(L.c.created_us, L.c.id)
                .limit(limit)
            )
            if self._postgres:
                stmt = stmt.with_for_update(skip_locked=True)
            rows = (await conn.execute(stmt)).all()
            for chunk in _chunks([r.id for r in rows]):
                await conn.execute(
                    update(L)
                    .where(L.c.id.in_(chunk))
                    .values(claimed_by=owner, claimed_until_us=now_us + lease_us)
                )
            # The deciding events' trace context: each lifecycle event goes out in its flow's trace.
            traceparents: dict[str, str | None] = {}
            for chunk in _chunks(sorted({r.caused_by for r in rows if r.caused_by})):
                found = await conn.execute(select(E.c.id, E.c.traceparent).where(E.c.id.in_(chunk)))
                traceparents.update((event_id, tp) for event_id, tp in found)
        return [
            Pending(
                r.id,
                r.correlation_id,
                r.type,
                r.caused_by,
                r.payload,
                r.created_us,
                traceparents.get(r.caused_by) if r.caused_by else None,
            )
            for r in rows
        ]

    async def mark_sent(self, ids: list[str], now_us: int) -> None:
        """Record that the lifecycle events ``ids`` were acknowledged by the broker."""
        async with self._lock, self._engine.begin() as conn:
            for chunk in _chunks(ids):
                await conn.execute(
                    update(L)
                    .where(L.c.id.in_(chunk), L.c.sent_us.is_(None))
                    .values(sent_us=now_us, claimed_until_us=None)
                )

    # -- one batch -------------------------------------------------------------------------

    def _insert(self, table: Table) -> Any:
        dialect = postgresql if self._postgres else sqlite
        return dialect.insert(table)

    async def _fence(
        self, conn: AsyncConnection, advance: Mapping[TopicPartition, Advance]
    ) -> None:
        if not advance:
            return
        # Exactly the batch's partitions: a concurrent batch of other partitions is not held.
        stmt = (
            select(OFF.c.topic, OFF.c.kafka_partition, OFF.c.next_offset)
            .where(
                OFF.c.group_id == self._group,
                tuple_(OFF.c.topic, OFF.c.kafka_partition).in_(
                    [(tp.topic, tp.partition) for tp in sorted(advance)]
                ),
            )
            .order_by(OFF.c.topic, OFF.c.kafka_partition)
        )
        if self._postgres:
            stmt = stmt.with_for_update()
        stored = {
            TopicPartition(r.topic, r.kafka_partition): r.next_offset
            for r in await conn.execute(stmt)
        }
        new: list[dict[str, Any]] = []
        moved: list[dict[str, Any]] = []
        for tp in sorted(advance):
            step = advance[tp]
            if stored.get(tp) != step.expected:
                raise FencedError(tp, step.expected)
            row = {"b_topic": tp.topic, "b_partition": tp.partition, "b_next": step.next}
            (new if step.expected is None else moved).append(row)
        if moved:
            await conn.execute(
                update(OFF)
                .where(
                    OFF.c.group_id == self._group,
                    OFF.c.topic == bindparam("b_topic"),
                    OFF.c.kafka_partition == bindparam("b_partition"),
                )
                .values(next_offset=bindparam("b_next")),
                moved,
            )
        if new:
            # Two first readers of a partition race on this insert: the loser's transaction
            # fails on the primary key and its batch is read again (then fenced).
            await conn.execute(
                OFF.insert(),
                [
                    {
                        "group_id": self._group,
                        "topic": r["b_topic"],
                        "kafka_partition": r["b_partition"],
                        "next_offset": r["b_next"],
                    }
                    for r in new
                ],
            )

    async def _record_events(
        self, conn: AsyncConnection, seen: list[SeenEvent], applied: Applied
    ) -> tuple[set[str], set[str], _Fresh]:
        copies: dict[str, list[SeenEvent]] = defaultdict(list)
        for event in seen:
            copies[event.envelope.id].append(event)
        # The copy at the lowest position is the one kept, whatever order copies come in.
        firsts = {
            event_id: group[0] if len(group) == 1 else min(group, key=lambda s: _key(s.position))
            for event_id, group in copies.items()
        }
        if self._postgres:
            # Insert every id; the conflicts are the ids seen before (one statement, and
            # a SELECT only for those: none in a backlog of new events).
            # In id order: two batches inserting the same ids wait for each other, never deadlock.
            rows = [_event_row(firsts[i], deliveries=len(copies[i])) for i in sorted(firsts)]
            inserted = set(
                await insert_rows(
                    conn, E, _EVENT_COLUMNS, rows, conflict="(id) DO NOTHING", returning="id"
                )
            )
            existing = await self._existing(conn, [i for i in copies if i not in inserted])
            rows = [row for row in rows if row[0] in inserted]
        else:  # the only writer (BEGIN IMMEDIATE): what is there stays there until the commit
            existing = await self._existing(conn, list(copies))
            rows = [
                _event_row(first, deliveries=len(copies[i]))
                for i, first in firsts.items()
                if i not in existing
            ]
            await insert_rows(conn, E, _EVENT_COLUMNS, rows)
        touched: set[str] = set()
        created: set[str] = set()
        fresh = _Fresh()
        for row in rows:
            event_id, cid = row[0], row[1]
            group = copies[event_id]
            touched.add(cid)
            created.add(cid)
            fresh.nodes[cid].append(
                Node(event_id, row[3], row[7], row[2], row[6], firsts[event_id].envelope.joined_ids)
            )
            fresh.duplicates[cid] += len(group) - 1
            applied.events += 1
            applied.duplicates += len(group) - 1
        bumps: list[dict[str, Any]] = []
        for event_id, found in existing.items():
            group, first = copies[event_id], firsts[event_id]
            if found.correlation_id != first.envelope.correlation_id:
                logger.warning(
                    "event id %s was reused in flow %s (first seen in flow %s); counted as a "
                    "duplicate of the first",
                    event_id,
                    first.envelope.correlation_id,
                    found.correlation_id,
                )
            kept = min(
                Position(found.topic, found.kafka_partition, found.kafka_offset),
                first.position,
                key=_key,
            )
            bumps.append(
                {
                    "b_id": event_id,
                    "b_n": len(group),
                    "b_topic": kept.topic,
                    "b_partition": kept.partition,
                    "b_offset": kept.offset,
                }
            )
            touched.add(found.correlation_id)
            fresh.duplicates[found.correlation_id] += len(group)
            applied.duplicates += len(group)
        if rows:
            pairs = sorted({(row[3], row[6]) for row in rows})
            await insert_rows(conn, P, ("type", "service"), pairs)
            # A checkpoint decision the observer published comes back as a flow event:
            # its outbox row is then observed, like a lifecycle event read back.
            decisions = [row[0] for row in rows if row[3] in APPROVAL_MODELS]
            if decisions:
                await conn.execute(update(L).where(L.c.id.in_(decisions)).values(observed=True))
        if bumps:
            await conn.execute(
                update(E)
                .where(E.c.id == bindparam("b_id"))
                .values(
                    deliveries=E.c.deliveries + bindparam("b_n"),
                    topic=bindparam("b_topic"),
                    kafka_partition=bindparam("b_partition"),
                    kafka_offset=bindparam("b_offset"),
                ),
                bumps,
            )
        return touched, created, fresh

    async def _existing(self, conn: AsyncConnection, ids: list[str]) -> dict[str, Any]:
        """The stored events among ``ids``: where each sits, and its flow."""
        existing: dict[str, Any] = {}
        for chunk in _chunks(ids):
            rows = await conn.execute(
                select(
                    E.c.id, E.c.correlation_id, E.c.topic, E.c.kafka_partition, E.c.kafka_offset
                ).where(E.c.id.in_(chunk))
            )
            existing.update({r.id: r for r in rows})
        return existing

    async def _record_dead_letters(
        self, conn: AsyncConnection, seen: list[SeenDeadLetter], applied: Applied
    ) -> set[str]:
        if not seen:
            return set()
        by_key: dict[str, list[SeenDeadLetter]] = defaultdict(list)
        for letter in seen:
            by_key[letter.key].append(letter)
        rows = []
        for key, group in by_key.items():
            letter = min(group, key=lambda s: _key(s.position))
            rows.append(
                {
                    "key": key,
                    "correlation_id": letter.correlation_id,
                    "event_id": letter.event_id,
                    "event_type": letter.event_type,
                    "error_type": letter.error_type[:256],
                    "error_message": letter.error_message,
                    "group_id": (letter.group or "")[:256] or None,
                    "attempts": letter.attempts,
                    "failed_us": micros(letter.failed_at),
                    "original_topic": letter.original.topic if letter.original else None,
                    "original_partition": letter.original.partition if letter.original else None,
                    "original_offset": letter.original.offset if letter.original else None,
                    "topic": letter.position.topic,
                    "kafka_partition": letter.position.partition,
                    "kafka_offset": letter.position.offset,
                    "copies": len(group),
                    "fingerprint": letter.fingerprint or None,
                    "error_frame": letter.frame or None,
                }
            )
        stmt = self._insert(D)
        await conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[D.c.key], set_={"copies": D.c.copies + stmt.excluded.copies}
            ),
            rows,
        )
        applied.dead_letters += len(seen)
        return {s.correlation_id for s in seen if s.correlation_id is not None}

    async def _record_audits(
        self, conn: AsyncConnection, seen: list[SeenAudit], applied: Applied
    ) -> set[str]:
        """Move dead letters' statuses on; a resolved dead letter stays resolved."""
        rows = []
        for entry in seen:
            key = (entry.action, entry.result if entry.action != "purge" else None)
            status = _STATUS_OF.get(key)
            if status is None:
                continue
            rows.append(
                {
                    "topic": entry.dead_letter.topic[:249],
                    "kafka_partition": entry.dead_letter.partition,
                    "kafka_offset": entry.dead_letter.offset,
                    "status": status,
                    "status_us": micros(entry.at),
                }
            )
        applied.audits += len(seen)
        if not rows:
            return set()
        for row in rows:  # in order: a later entry decides, but nothing undoes "resolved"
            stmt = self._insert(DS).values(row)
            await conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=[DS.c.topic, DS.c.kafka_partition, DS.c.kafka_offset],
                    set_={
                        "status": case(
                            (DS.c.status == "resolved", DS.c.status), else_=stmt.excluded.status
                        ),
                        "status_us": stmt.excluded.status_us,
                    },
                )
            )
        touched: set[str] = set()
        for row in rows:
            found = await conn.execute(
                select(D.c.correlation_id).where(
                    D.c.topic == row["topic"],
                    D.c.kafka_partition == row["kafka_partition"],
                    D.c.kafka_offset == row["kafka_offset"],
                    D.c.correlation_id.is_not(None),
                )
            )
            touched.update(r[0] for r in found)
        return touched

    async def _record_rejects(
        self, conn: AsyncConnection, seen: list[SeenReject], applied: Applied
    ) -> None:
        if not seen:
            return
        rows = [
            {
                "topic": s.position.topic,
                "kafka_partition": s.position.partition,
                "kafka_offset": s.position.offset,
                "error_type": s.error_type[:256],
                "error_message": s.error_message,
                "record_key": s.key,
                "size": s.size,
                "time_us": micros(s.timestamp),
            }
            for s in seen
        ]
        await conn.execute(self._insert(R).on_conflict_do_nothing(), rows)
        applied.rejects += len(seen)

    async def _record_lifecycle(
        self, conn: AsyncConnection, seen: list[SeenLifecycle], applied: Applied
    ) -> None:
        if not seen:
            return
        rows: dict[str, tuple[Any, ...]] = {}
        for s in seen:
            moment = micros(s.envelope.time)
            rows[s.envelope.id] = (
                s.envelope.id,
                s.envelope.correlation_id,
                s.envelope.type,
                _status_of(s),
                s.envelope.causation_id,
                s.payload or "{}",
                moment,
                moment,
                True,
            )
        await insert_rows(
            conn,
            L,
            _LIFECYCLE_COLUMNS,
            [rows[i] for i in sorted(rows)],
            conflict=(
                "(id) DO UPDATE SET observed = true, "
                "sent_us = coalesce(obs_lifecycle.sent_us, excluded.sent_us)"
            ),
        )
        applied.lifecycle += len(seen)

    async def _rejudge(
        self,
        conn: AsyncConnection,
        cids: set[str],
        created: set[str],
        now_us: int,
        fresh: _Fresh,
    ) -> tuple[list[Transition], dict[str, _Cached | None]]:
        """Judge ``cids`` again; return the transitions and what to cache once committed."""
        if not cids:
            return [], {}
        current, new = await self._lock_flows(conn, cids, created, now_us)
        graphs, duplicates, letters = await self._load(conn, current, new, fresh)
        remembered: dict[str, _Cached | None] = {}
        updates = []
        transitions = []
        waiting: dict[str, tuple[str | None, list[Wait]]] = {}
        for cid, (status, version) in current.items():
            graph = graphs.get(cid) or FlowGraph(cid, ())
            if not len(graph):
                continue  # dead letters of a flow whose events have not been read yet
            refusals = letters.get(cid, ())
            verdict = judge(graph, self._catalog, now_us, refusals)
            spec = self._catalog.get(verdict.saga) if verdict.saga else None
            waiting[cid] = (verdict.saga, waits_of(graph, verdict, spec))
            remembered[cid] = (
                None if verdict.status.final else _Cached(version + 1, graph, duplicates[cid])
            )
            updates.append(_flow_values(graph, verdict, duplicates[cid], len(refusals), now_us))
            if verdict.status.value != status:
                change = transition(graph, verdict, now_us)
                if change is not None:
                    transitions.append(change)
        await update_rows(
            conn, F, "correlation_id", _FLOW_COLUMNS, updates, also="version = version + 1"
        )
        await insert_rows(conn, L, _LIFECYCLE_COLUMNS, [_outbox_row(t) for t in transitions])
        await record_waits(conn, waiting)
        return transitions, remembered

    async def _lock_flows(
        self, conn: AsyncConnection, cids: set[str], created: set[str], now_us: int
    ) -> tuple[dict[str, tuple[str, int]], set[str]]:
        """Create missing flow rows, lock the rows (PostgreSQL); status and version, and new rows.

        A flow whose row this transaction created has no events in the database
        but this batch's (a flow's row is created with its first events), so its
        events need no query.
        """
        new: set[str] = set()
        current: dict[str, tuple[str, int]] = {}
        if self._postgres:
            # Concurrent writers: insert first (a row another transaction is creating is
            # waited for), then lock every row in one order.
            new.update(
                await insert_rows(
                    conn,
                    F,
                    _PLACEHOLDER_COLUMNS,
                    [_placeholder(cid, now_us) for cid in sorted(created)],
                    conflict="(correlation_id) DO NOTHING",
                    returning="correlation_id",
                )
            )
            missing = set(cids)
        else:  # the only writer: read first, insert only the rows not there
            missing = set()
            for chunk in _chunks(sorted(cids)):
                stmt = select(F.c.correlation_id, F.c.status, F.c.version).where(
                    F.c.correlation_id.in_(chunk)
                )
                current.update(
                    {r.correlation_id: (r.status, r.version) for r in await conn.execute(stmt)}
                )
            new.update(cid for cid in created if cid not in current)
            await insert_rows(
                conn, F, _PLACEHOLDER_COLUMNS, [_placeholder(cid, now_us) for cid in sorted(new)]
            )
            current.update((cid, ("running", 0)) for cid in new)
        for chunk in _chunks(sorted(missing)):
            stmt = (
                select(F.c.correlation_id, F.c.status, F.c.version)
                .where(F.c.correlation_id.in_(chunk))
                .order_by(F.c.correlation_id)
                .with_for_update()
            )
            current.update(
                {r.correlation_id: (r.status, r.version) for r in await conn.execute(stmt)}
            )
        return current, new

    async def _load(
        self,
        conn: AsyncConnection,
        current: dict[str, tuple[str, int]],
        new: set[str],
        fresh: _Fresh,
    ) -> tuple[dict[str, FlowGraph], dict[str, int], dict[str, list[Refusal]]]:
        """The flows' graphs, extra copies and open dead letters.

        From the cache where it is current (the cached graph extended with this
        batch's events), from this batch alone for flows whose row it created,
        else from the database.
        """
        graphs: dict[str, FlowGraph] = {}
        nodes: dict[str, list[Node]] = defaultdict(list)
        duplicates: dict[str, int] = defaultdict(int)
        unknown = []
        for cid, (_status, version) in current.items():
            cached = self._cache.get(cid)
            if cid in new:
                nodes[cid] = list(fresh.nodes.get(cid, ()))
                duplicates[cid] = fresh.duplicates.get(cid, 0)
            elif cached is not None and cached.version == version:
                graphs[cid] = cached.graph.extended(fresh.nodes.get(cid, ()))
                duplicates[cid] = cached.duplicates + fresh.duplicates.get(cid, 0)
            else:  # never seen here, or another instance wrote it since
                unknown.append(cid)
        for chunk in _chunks(unknown):
            rows = await conn.execute(
                select(
                    E.c.correlation_id,
                    E.c.id,
                    E.c.type,
                    E.c.time_us,
                    E.c.causation_id,
                    E.c.service,
                    E.c.deliveries,
                    E.c.joined,
                ).where(E.c.correlation_id.in_(chunk))
            )
            for r in rows:
                nodes[r.correlation_id].append(
                    Node(r.id, r.type, r.time_us, r.causation_id, r.service, _ids(r.joined))
                )
                duplicates[r.correlation_id] += r.deliveries - 1
        graphs.update((cid, FlowGraph(cid, found)) for cid, found in nodes.items())
        letters: dict[str, list[Refusal]] = defaultdict(list)
        for chunk in _chunks(list(current)):
            open_letters = await conn.execute(
                select(
                    D.c.correlation_id,
                    D.c.event_id,
                    D.c.event_type,
                    D.c.group_id,
                    D.c.error_type,
                    D.c.failed_us,
                )
                .select_from(D.outerjoin(DS, _same_position()))
                .where(
                    D.c.correlation_id.in_(chunk),
                    or_(DS.c.status.is_(None), DS.c.status.notin_(_SETTLED)),
                )
            )
            for letter in open_letters:
                letters[letter.correlation_id].append(
                    Refusal(
                        letter.event_id or "",
                        letter.event_type,
                        letter.group_id,
                        letter.error_type,
                        letter.failed_us,
                    )
                )
        return graphs, duplicates, letters

    def _remember(self, remembered: dict[str, _Cached | None]) -> None:
        """After a commit: keep open flows' events in memory (bounded), forget ended ones."""
        cache = self._cache
        for cid, entry in remembered.items():
            if entry is None:
                cache.pop(cid, None)
            elif (known := cache.get(cid)) is None or known.version < entry.version:
                # Concurrent batches (PostgreSQL) may commit in one order and get here in
                # another: an older state never replaces a newer one.
                cache[cid] = entry
                cache.move_to_end(cid)
        while len(cache) > self._cache_limit:
            cache.popitem(last=False)


_FLOW_COLUMNS = (
    "saga",
    "status",
    "root_id",
    "root_type",
    "connected",
    "started_us",
    "last_us",
    "ended_us",
    "deadline_us",
    "end_type",
    "event_count",
    "duplicates",
    "dead_letters",
    "orphans",
    "expected",
    "missing",
    "services",
    "judged_us",
)


def _flow_values(
    graph: FlowGraph, verdict: Judgement, duplicates: int, letters: int, now_us: int
) -> tuple[Any, ...]:
    """The flow's key, then its columns in the order of ``_FLOW_COLUMNS``."""
    root = verdict.root
    return (
        graph.correlation_id,
        verdict.saga,
        verdict.status.value,
        root.id if root else None,
        root.type if root else None,
        verdict.connected,
        root.time_us if root is not None else graph.first.time_us,
        graph.last.time_us,
        verdict.ended_us,
        verdict.deadline_us,
        verdict.end.type if verdict.end else None,
        len(graph),
        duplicates,
        letters,
        len(graph.orphans),
        _expected_json(verdict.expected),
        _json_list(verdict.missing),
        _json_list(graph.services),
        now_us,
    )


def _expected_json(expected: tuple[Expectation, ...]) -> str:
    """``json.dumps([e.as_dict() for e in expected])``, written directly (once per judgement)."""
    if not expected:
        return "[]"
    parts = []
    for e in expected:
        text = (
            f'{{"reason": {_text(e.reason.value)}, "one_of": {_json_list(e.one_of)}, '
            f'"after_id": {_text(e.after_id)}, "after_type": {_text(e.after_type)}'
        )
        if e.checkpoint is not None:
            text += f', "checkpoint": {_text(e.checkpoint)}, "roles": {_json_list(e.roles)}'
        parts.append(text + "}")
    return f"[{', '.join(parts)}]"


def _text(value: str | None) -> str:
    return "null" if value is None else _encode_string(value)


_encode_string = json.encoder.encode_basestring_ascii
"""How ``json.dumps`` writes a string (``ensure_ascii``): the C encoder's."""


@functools.lru_cache(maxsize=1024)
def _json_list(items: tuple[str, ...]) -> str:
    """``json.dumps(list(items))``, once per value (a flow's services, its missing steps)."""
    return json.dumps(list(items))


def _same_position() -> Any:
    """The join of a dead letter with its status row."""
    return and_(
        DS.c.topic == D.c.topic,
        DS.c.kafka_partition == D.c.kafka_partition,
        DS.c.kafka_offset == D.c.kafka_offset,
    )


_LIFECYCLE_COLUMNS = (
    "id",
    "correlation_id",
    "type",
    "status",
    "caused_by",
    "payload",
    "created_us",
    "sent_us",
    "observed",
)


def _outbox_row(change: Transition) -> tuple[Any, ...]:
    """An unsent ``obs_lifecycle`` row, in the order of ``_LIFECYCLE_COLUMNS``."""
    return (
        change.id,
        change.correlation_id,
        change.type,
        change.status,
        change.caused_by,
        change.payload,
        change.created_us,
        None,
        False,
    )


_PLACEHOLDER_COLUMNS = (
    "correlation_id",
    "status",
    "connected",
    "started_us",
    "last_us",
    "event_count",
    "duplicates",
    "dead_letters",
    "orphans",
    "expected",
    "missing",
    "services",
    "version",
    "judged_us",
)


def _placeholder(cid: str, now_us: int) -> tuple[Any, ...]:
    """A new flow's row until it is judged, in the order of ``_PLACEHOLDER_COLUMNS``."""
    return (cid, "running", False, now_us, now_us, 0, 0, 0, 0, "[]", "[]", "[]", 0, now_us)


_EVENT_COLUMNS = (
    "id",
    "correlation_id",
    "causation_id",
    "type",
    "dataversion",
    "source",
    "service",
    "time_us",
    "traceparent",
    "trace_id",
    "topic",
    "kafka_partition",
    "kafka_offset",
    "payload",
    "size",
    "deliveries",
    "joined",
)


def _event_row(seen: SeenEvent, *, deliveries: int) -> tuple[Any, ...]:
    """An ``obs_events`` row, in the order of ``_EVENT_COLUMNS``."""
    envelope = seen.envelope
    position = seen.position
    return (
        envelope.id,
        envelope.correlation_id,
        envelope.causation_id,
        envelope.type[:256],
        envelope.dataversion,
        envelope.source,
        service_of(envelope.source),
        micros(envelope.time),
        (envelope.traceparent or "")[:256] or None,
        trace_id(envelope.traceparent),
        position.topic,
        position.partition,
        position.offset,
        seen.payload,
        seen.size,
        deliveries,
        envelope.joined,
    )


def _ids(joined: str | None) -> tuple[str, ...]:
    return tuple(joined.split(",")) if joined else ()


def _status_of(seen: SeenLifecycle) -> str:
    try:
        doc = json.loads(seen.payload or "{}")
    except ValueError:
        doc = {}
    status = doc.get("status") if isinstance(doc, dict) else None
    if isinstance(status, str):
        return status[:32]
    return seen.envelope.type.removeprefix("saga.")[:32]


def _key(position: Position) -> tuple[str, int, int]:
    return (position.topic, position.partition, position.offset)


def _chunks(items: Sequence[T] | Iterable[T], size: int = _CHUNK) -> Iterator[list[T]]:
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def open_engines(url: str) -> tuple[AsyncEngine, AsyncEngine]:
    """A writer and a reader for ``url``.

    On SQLite the writer takes the write lock as it begins (``BEGIN IMMEDIATE``)
    and readers use their own connections (WAL lets them read while it writes);
    on PostgreSQL one pool serves both.
    """
    writer = create_engine(url)
    if make_url(writer.url).get_backend_name() != "sqlite":
        return writer, writer

    @sqlalchemy_event.listens_for(writer.sync_engine, "connect")
    def _no_implicit_begin(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @sqlalchemy_event.listens_for(writer.sync_engine, "begin")
    def _begin_immediate(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return writer, create_engine(url)
