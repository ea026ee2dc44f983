"""The toolkit's own tables: inbox, business keys bound to their flows, and outbox."""

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


async def create_tables(engine: AsyncEngine) -> None:
    """Create the inbox, key and outbox tables if they do not exist."""
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
