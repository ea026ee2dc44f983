"""Business keys bound to their flow: an order id belongs to the flow that created it.

Flow ids (correlation ids) are namespaced per gateway key, but a service keys
its state by a payload field such as ``order_id``. Without a binding, any
flow that names someone else's order id acts on that order. A binding records,
in the service's own database and in the handler's transaction, which flow a
key belongs to; an event of another flow naming it is refused with
:class:`~choreokit.events.KeyConflictError` (dead-lettered, never applied).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Executable, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from choreokit.events._context import current_context
from choreokit.events._errors import ConfigurationError, KeyConflictError
from choreokit.events.sql._inbox import current_consumer, transaction
from choreokit.events.sql._tables import keys

MAX_KIND = 64
MAX_KEY = 255


class KeyBindings:
    """The business keys of one consumer (a service), each bound to one flow.

    Example (outside a handler, e.g. an HTTP intake that creates the order)::

        bindings = KeyBindings(consumer="orders")
        async with engine.begin() as conn:
            await bindings.bind(conn, "order", order_id, correlation_id)
            ...  # the order's own rows, in the same transaction

    Inside a handler wrapped by :class:`Inbox`, :func:`bind_key` does the same
    with the handler's transaction and flow.

    Args:
        consumer: Whose keys these are (the service name); services sharing a
            database keep separate bindings.
    """

    def __init__(self, *, consumer: str) -> None:
        self.consumer = consumer

    async def owner(self, conn: AsyncConnection, kind: str, key: str) -> str | None:
        """The flow ``key`` of ``kind`` is bound to, or ``None`` if it is not bound yet."""
        row = (
            await conn.execute(
                select(keys.c.correlation_id).where(
                    keys.c.consumer == self.consumer, keys.c.kind == kind, keys.c.key == key
                )
            )
        ).first()
        return None if row is None else str(row.correlation_id)

    async def bind(self, conn: AsyncConnection, kind: str, key: str, correlation_id: str) -> None:
        """Bind ``key`` to ``correlation_id`` if it is free; accept it if already bound there.

        Two flows racing for a free key cannot both win: the insert does nothing
        on a conflict (on SQLite and PostgreSQL alike) and the winner is read back.

        Raises:
            KeyConflictError: The key belongs to another flow.
            ConfigurationError: ``kind`` or ``key`` is empty or too long.
        """
        _check(kind, key)
        owner = await self.owner(conn, kind, key)
        if owner is None:
            await conn.execute(self._insert(conn, kind, key, correlation_id))
            owner = await self.owner(conn, kind, key)
        if owner != correlation_id:
            raise KeyConflictError(kind, key, correlation_id, owner or "?")

    def _insert(
        self, conn: AsyncConnection, kind: str, key: str, correlation_id: str
    ) -> Executable:
        values = {
            "consumer": self.consumer,
            "kind": kind,
            "key": key,
            "correlation_id": correlation_id,
            "bound_at": datetime.now(UTC),
        }
        dialect = conn.dialect.name
        if dialect == "postgresql":
            return postgresql.insert(keys).values(values).on_conflict_do_nothing()
        if dialect == "sqlite":
            return sqlite.insert(keys).values(values).on_conflict_do_nothing()
        return insert(keys).values(values)


async def bind_key(kind: str, key: str) -> None:
    """Bind a business key to the flow being handled, or refuse the event.

    Call it at the top of a handler wrapped by :class:`Inbox`, for every key the
    handler will act on (``await bind_key("order", event.order_id)``). The first
    flow to name a key owns it; the binding commits with the handler's
    transaction. An event of another flow raises :class:`KeyConflictError`,
    which dead-letters it without retrying, so nothing of it is applied.

    Raises:
        KeyConflictError: The key belongs to another flow.
        ConfigurationError: Not inside a handler wrapped by :class:`Inbox`.
    """
    context = current_context.get()
    consumer = current_consumer()
    if context is None or consumer is None:
        raise ConfigurationError(
            "bind_key works inside a handler wrapped by events.sql.Inbox; elsewhere use "
            "KeyBindings(consumer=...).bind(conn, kind, key, correlation_id)"
        )
    await KeyBindings(consumer=consumer).bind(transaction(), kind, key, context.correlation_id)


def _check(kind: str, key: str) -> None:
    if not kind or len(kind) > MAX_KIND:
        raise ConfigurationError(f"a key kind is 1 to {MAX_KIND} characters, not {kind[:80]!r}")
    if not key or len(key) > MAX_KEY:
        raise ConfigurationError(
            f"a business key is 1 to {MAX_KEY} characters; bound the field it comes from "
            f"(got {len(key)} characters)"
        )
