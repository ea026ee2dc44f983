"""The toolkit's own tables: inbox, business keys bound to their flows, outbox, and joins."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.ext.asyncio import AsyncEngine

metadata = MetaData()
"""Tables of ``choreokit.events.sql``; :func:`create_tables` creates them."""

inbox = Table(
    "choreo_inbox",
    metadata,
    Column("consumer", String(128), primary_key=True),
    Column("event_id", String(1024), primary_key=True),
    Column("event_type", String(255), nullable=False),
    Column("correlation_id", String(1024), nullable=False),
    Column("handled_at", DateTime(timezone=True), nullable=False, index=True),
    Column("outputs", Text, nullable=False),
)

keys = Table(
    "choreo_keys",
    metadata,
    Column("consumer", String(128), primary_key=True),
    Column("kind", String(64), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("correlation_id", String(1024), nullable=False),
    Column("bound_at", DateTime(timezone=True), nullable=False),
)
"""Business keys (an order id) and the flow each belongs to, per consumer."""

outbox = Table(
    "choreo_outbox",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("producer", String(128), nullable=False),
    Column("record", Text, nullable=False),
    Column("trace_context", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("published_at", DateTime(timezone=True), nullable=True),
)
Index("ix_choreo_outbox_pending", outbox.c.producer, outbox.c.published_at, outbox.c.id)


joins = Table(
    "choreo_joins",
    metadata,
    Column("consumer", String(128), primary_key=True),
    Column("join_name", String(64), primary_key=True),
    Column("join_key", String(1024), primary_key=True),
    Column("correlation_id", String(1024), nullable=False),
    Column("opened_by", String(1024), nullable=False),
    Column("opened_at", DateTime(timezone=True), nullable=False),
    Column("deadline_at", DateTime(timezone=True), nullable=True),
    Column("claimed_by", String(1024), nullable=True),
    Column("claimed_at", DateTime(timezone=True), nullable=True),
    Column("timeout_sent_at", DateTime(timezone=True), nullable=True),
)
"""Open and completed joins: one row per consumer, join and key; ``claimed_by`` is the input
whose handling completed it (or ``deadline``), set once by an atomic update."""
Index("ix_choreo_joins_deadline", joins.c.consumer, joins.c.join_name, joins.c.deadline_at)

join_inputs = Table(
    "choreo_join_inputs",
    metadata,
    Column("consumer", String(128), primary_key=True),
    Column("join_name", String(64), primary_key=True),
    Column("join_key", String(1024), primary_key=True),
    Column("event_type", String(255), primary_key=True),
    Column("envelope", Text, nullable=False),
    Column("payload", Text, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
)
"""The first event of each input type a join received, per key (later ones are ignored)."""


async def create_tables(engine: AsyncEngine) -> None:
    """Create the inbox, key, outbox and join tables if they do not exist."""
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
