"""The inbox: each event changes a service's state once, however often it is delivered."""

from __future__ import annotations

import asyncio
import logging
from contextvars import ContextVar
from datetime import UTC, datetime

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from choreokit.events._errors import (
    ConfigurationError,
    InboxReplayError,
    UnknownEventTypeError,
    UnknownEventVersionError,
)
from choreokit.events._handling import Delivery, Next
from choreokit.events._middleware import Middleware
from choreokit.events._outbound import Outbound
from choreokit.events._registry import Registry, default_registry
from choreokit.events.sql._records import dumps_all, loads_all
from choreokit.events.sql._tables import inbox

logger = logging.getLogger("choreokit.inbox")

_current: ContextVar[AsyncConnection | None] = ContextVar("choreokit_sql_transaction", default=None)
_consumer: ContextVar[str | None] = ContextVar("choreokit_sql_consumer", default=None)


def current_consumer() -> str | None:
    """The consumer name of the :class:`Inbox` around the running handler, if any."""
    return _consumer.get()


def transaction() -> AsyncConnection:
    """Return the database transaction of the handler attempt in progress.

    Whatever a handler writes through it commits together with the inbox
    record, or not at all.

    Raises:
        ConfigurationError: No :class:`Inbox` wraps the running handler.
    """
    conn = _current.get()
    if conn is None:
        raise ConfigurationError(
            "no handler transaction here: use events.sql.Inbox on the service "
            "(service.use(Inbox(engine, consumer=service.name)))"
        )
    return conn


class Inbox(Middleware):
    """Effectively-once handling, keyed by ``ce_id``, in the service's own database.

    Each handler attempt runs in one database transaction (available to the
    handler through :func:`transaction`). The transaction also records the
    event as handled, with the events the handler published. When the same
    event arrives again (a redelivery after a crash, a duplicate send), the
    handler does not run: the recorded events are sent again instead, with
    their original ids, so the flow continues exactly as the first time and
    the next hop's inbox drops the repeats.

    Handlers whose work spans several transactions of their own (an
    orchestration) simply do not use :func:`transaction`; the inbox record is
    then written on its own at the end.

    On SQLite, which has a single writer, attempts of one process run one at a
    time (they queue in the process rather than in SQLite's busy handler); on
    PostgreSQL they run side by side.

    Args:
        engine: The service's database.
        consumer: Whose inbox this is (the service name); several services may
            share one database.
        registry: Where the recorded events' models are declared. Default: the
            registry of the service whose handler runs (``Service(registry=...)``),
            so a service on a registry of its own needs nothing more; outside a
            service, the default registry. A recorded event whose type it does not
            know makes the redelivery fail with :class:`InboxReplayError` (to the
            dead-letter topic), never a silent replay of nothing.
        serialize: Run attempts one at a time. Default: on SQLite only. A
            service whose handlers write only in short transactions of their
            own (not through :func:`transaction`) may turn it off.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        consumer: str,
        registry: Registry | None = None,
        serialize: bool | None = None,
    ) -> None:
        self._engine = engine
        self._consumer = consumer
        self._registry = registry
        # SQLite has one writer. Attempts of this process queue here, in order, instead of
        # in SQLite's busy handler, which polls with sleeps of up to 100 ms.
        if serialize is None:
            serialize = engine.dialect.name == "sqlite"
        self._one_at_a_time = asyncio.Lock() if serialize else None
        self.duplicates = 0
        """Deliveries recognised as already handled."""

    async def on_attempt(self, delivery: Delivery, call_next: Next) -> None:
        """Run the attempt in a transaction, or replay what the first handling published."""
        if self._one_at_a_time is None:
            await self._attempt(delivery, call_next)
            return
        async with self._one_at_a_time:
            await self._attempt(delivery, call_next)

    async def _attempt(self, delivery: Delivery, call_next: Next) -> None:
        event_id = delivery.envelope.id
        async with self._engine.connect() as conn:
            recorded = (
                await conn.execute(
                    select(inbox.c.outputs).where(
                        inbox.c.consumer == self._consumer, inbox.c.event_id == event_id
                    )
                )
            ).first()
            await conn.rollback()
            if recorded is not None:
                self.duplicates += 1
                logger.info(
                    "%s already handled %s %s; sending its %s recorded event(s) again",
                    self._consumer,
                    delivery.envelope.type,
                    event_id,
                    "no" if recorded.outputs == "[]" else "the",
                )
                delivery.outputs = self._replay(delivery, recorded.outputs)
                return
            async with conn.begin():
                token = _current.set(conn)
                named = _consumer.set(self._consumer)
                try:
                    await call_next(delivery)
                finally:
                    _consumer.reset(named)
                    _current.reset(token)
                self._check_replayable(delivery)
                await conn.execute(
                    insert(inbox).values(
                        consumer=self._consumer,
                        event_id=event_id,
                        event_type=delivery.envelope.type,
                        correlation_id=delivery.envelope.correlation_id,
                        handled_at=datetime.now(UTC),
                        outputs=dumps_all(delivery.outputs),
                    )
                )

    def _registry_for(self, delivery: Delivery) -> Registry:
        if self._registry is not None:
            return self._registry
        return delivery.registry if delivery.registry is not None else default_registry

    def _check_replayable(self, delivery: Delivery) -> None:
        """Refuse to record outputs a redelivery could not rebuild (before, not at, the replay)."""
        registry = self._registry_for(delivery)
        for output in delivery.outputs:
            envelope = output.envelope
            if not registry.knows(envelope.type):
                raise InboxReplayError(self._consumer, delivery.envelope.id, envelope.type)
            if envelope.dataversion not in registry.versions(envelope.type):
                raise InboxReplayError(
                    self._consumer, delivery.envelope.id, envelope.type, envelope.dataversion
                )

    def _replay(self, delivery: Delivery, recorded: str) -> list[Outbound]:
        """The events the first handling of ``delivery`` published, rebuilt to be sent again."""
        try:
            return loads_all(recorded, self._registry_for(delivery))
        except UnknownEventTypeError as exc:
            raise InboxReplayError(self._consumer, delivery.envelope.id, exc.event_type) from exc
        except UnknownEventVersionError as exc:
            raise InboxReplayError(
                self._consumer, delivery.envelope.id, exc.event_type, exc.version
            ) from exc

    async def prune(self, before: datetime) -> int:
        """Forget events handled before ``before``; returns how many.

        Keep them for longer than any redelivery can take (the topics'
        retention is a safe bound).
        """
        async with self._engine.begin() as conn:
            result = await conn.execute(
                delete(inbox).where(inbox.c.consumer == self._consumer, inbox.c.handled_at < before)
            )
        return int(result.rowcount or 0)
