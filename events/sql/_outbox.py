"""The transactional outbox: publish an event if and only if a database change commits."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

from opentelemetry import context as otel_context
from opentelemetry import propagate
from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from choreokit.events._errors import (
    ConfigurationError,
    OutboxRelayError,
    UnknownEventTypeError,
    UnknownEventVersionError,
)
from choreokit.events._outbound import Outbound
from choreokit.events._publisher import Publisher
from choreokit.events._registry import Registry, default_registry
from choreokit.events.sql._records import dump, load
from choreokit.events.sql._tables import outbox

logger = logging.getLogger("choreokit.outbox")


class Outbox:
    """Events staged in the caller's database transaction, sent by an :class:`OutboxRelay`.

    Example::

        async with outbox.transaction() as conn:
            await conn.execute(insert(orders).values(...))
            await outbox.stage(conn, publisher.prepare(OrderPlaced(...)))
        # committed: the relay sends the event now; had the insert failed, never.

    The trace context current at staging time is kept, so the send appears in
    the same trace as the work that staged it.

    Args:
        engine: The database the staged events live in (the caller's own).
        producer: Whose outbox this is (the service name).
    """

    def __init__(self, engine: AsyncEngine, *, producer: str) -> None:
        self.engine = engine
        self.producer = producer
        self._wakeup = asyncio.Event()

    async def stage(self, conn: AsyncConnection, outbound: Outbound) -> None:
        """Add ``outbound`` to the outbox within ``conn``'s transaction."""
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        await conn.execute(
            insert(outbox).values(
                producer=self.producer,
                record=json.dumps(dump(outbound), separators=(",", ":")),
                trace_context=json.dumps(carrier) if carrier else None,
                created_at=datetime.now(UTC),
            )
        )

    def notify(self) -> None:
        """Tell the relay that something was committed (it also looks on its own, regularly)."""
        self._wakeup.set()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """A transaction on the outbox's database that wakes the relay once committed."""
        async with self.engine.begin() as conn:
            yield conn
        self.notify()

    async def wait(self, timeout: float) -> None:  # noqa: ASYNC109 - a poll interval, not a deadline
        """Wait until notified or ``timeout`` seconds passed."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), timeout)
        self._wakeup.clear()


class OutboxRelay:
    """Sends staged events in the order they were staged, and marks them sent.

    A row is marked only after the broker acknowledged it, so a crash can at
    worst send a row twice (with the same ``ce_id``: the next hop's inbox
    drops it); it never loses one. On PostgreSQL, replicas sharing a database
    lock the rows they send (``FOR UPDATE SKIP LOCKED``), so each row is sent
    by one of them.

    Args:
        outbox: What to send.
        publisher: How to send it (the service's publisher and its middlewares).
        registry: Where the staged events' models are declared.
        batch: Most rows sent per round.
        poll_interval: How often to look when nobody calls :meth:`Outbox.notify`.
        keep_sent: How long sent rows are kept before they are deleted.
    """

    def __init__(
        self,
        outbox: Outbox,
        publisher: Publisher,
        *,
        registry: Registry = default_registry,
        batch: int = 500,
        poll_interval: timedelta = timedelta(seconds=1),
        keep_sent: timedelta = timedelta(days=1),
    ) -> None:
        self._outbox = outbox
        self._publisher = publisher
        self._registry = registry
        self._batch = batch
        self._poll = poll_interval.total_seconds()
        self._keep_sent = keep_sent
        self.sent = 0
        """Rows sent since the relay started."""

    async def run(self, stop: asyncio.Event) -> None:
        """Send until ``stop`` is set; a failing round is retried after the poll interval."""
        pruned_at = datetime.min.replace(tzinfo=UTC)
        while not stop.is_set():
            try:
                while await self.drain() == self._batch:
                    pass  # more is waiting: go on without pausing
                now = datetime.now(UTC)
                if now - pruned_at > timedelta(hours=1):
                    await self.prune(now - self._keep_sent)
                    pruned_at = now
            except ConfigurationError as exc:  # what to change is in the message: no traceback
                logger.error("%s; retrying in %.1fs", exc, self._poll)  # noqa: TRY400
            except Exception:
                logger.exception("outbox relay round failed; retrying in %.1fs", self._poll)
            await self._outbox.wait(self._poll)

    async def drain(self) -> int:
        """Send one round of pending rows; return how many were sent."""
        engine = self._outbox.engine
        async with engine.begin() as conn:
            query = (
                select(outbox.c.id, outbox.c.record, outbox.c.trace_context)
                .where(outbox.c.producer == self._outbox.producer, outbox.c.published_at.is_(None))
                .order_by(outbox.c.id)
                .limit(self._batch)
            )
            if engine.dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            rows = (await conn.execute(query)).all()
            if not rows:
                return 0
            futures = []
            for row in rows:
                try:
                    outbound = load(json.loads(row.record), self._registry)
                except (UnknownEventTypeError, UnknownEventVersionError) as exc:
                    raise _unknown(self._outbox.producer, row.id, exc) from exc
                parent = propagate.extract(json.loads(row.trace_context or "{}"))
                token = otel_context.attach(parent)
                try:
                    futures.append(await self._publisher.send(outbound))
                finally:
                    otel_context.detach(token)
            outcomes = await asyncio.gather(*futures, return_exceptions=True)
            sent = []
            for row, outcome in zip(rows, outcomes, strict=True):
                if isinstance(outcome, BaseException):
                    logger.warning("outbox row %s not acknowledged (%s); retrying", row.id, outcome)
                    break
                sent.append(row.id)
            if sent:
                await conn.execute(
                    update(outbox)
                    .where(outbox.c.id.in_(sent))
                    .values(published_at=datetime.now(UTC))
                )
        self.sent += len(sent)
        return len(sent)

    async def prune(self, before: datetime) -> int:
        """Delete rows sent before ``before``; returns how many."""
        async with self._outbox.engine.begin() as conn:
            result = await conn.execute(
                delete(outbox).where(
                    outbox.c.producer == self._outbox.producer, outbox.c.published_at < before
                )
            )
        return int(result.rowcount or 0)

    async def pending(self) -> int:
        """How many staged rows are not sent yet."""
        async with self._outbox.engine.connect() as conn:
            rows = await conn.execute(
                select(outbox.c.id).where(
                    outbox.c.producer == self._outbox.producer, outbox.c.published_at.is_(None)
                )
            )
            return len(rows.all())


def _unknown(
    producer: str, row: int, error: UnknownEventTypeError | UnknownEventVersionError
) -> OutboxRelayError:
    version = error.version if isinstance(error, UnknownEventVersionError) else None
    return OutboxRelayError(producer, row, error.event_type, version)
