"""Effectively-once handling and transactional publishing, in a service's own database.

* :class:`Inbox`: a middleware that runs each handler attempt in a database
  transaction and records the handled ``ce_id`` with it, so a redelivered
  event changes nothing twice (its recorded events are sent again instead).
* :class:`KeyBindings` and :func:`bind_key`: bind a business key (an order
  id) to the flow that created it; events of other flows naming it are refused.
* :class:`Outbox` and :class:`OutboxRelay`: stage events in the same
  transaction as a database change; the relay sends them once committed.
* :class:`Join`: fan-in; act once when one event of each of several types has
  arrived for a key (a flow, an order id), with an optional deadline.

Both work on SQLite and PostgreSQL through SQLAlchemy's asyncio engine (see
``choreokit.services.runtime.database.create_engine``). See ``docs/persistence.md``.
"""

from choreokit.events.extras import needs_extra as _needs_extra

with _needs_extra("sql", "choreokit.events.sql"):
    from choreokit.events.sql._inbox import Inbox, transaction
    from choreokit.events.sql._join import Join, Joined
    from choreokit.events.sql._keys import KeyBindings, bind_key
    from choreokit.events.sql._outbox import Outbox, OutboxRelay
    from choreokit.events.sql._tables import create_tables, metadata

__all__ = [
    "Inbox",
    "Join",
    "Joined",
    "KeyBindings",
    "Outbox",
    "OutboxRelay",
    "bind_key",
    "create_tables",
    "metadata",
    "transaction",
]
