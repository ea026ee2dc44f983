"""Inventory's tables: stock per SKU, and one reservation per order."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    insert,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

metadata = MetaData()

stock = Table(
    "inventory_stock",
    metadata,
    Column("sku", String(64), primary_key=True),
    Column("available", Integer, nullable=False),
)

reservations = Table(
    "inventory_reservations",
    metadata,
    Column("reservation_id", String(80), primary_key=True),
    Column("order_id", String(64), nullable=False, unique=True),
    Column("correlation_id", String(1024), nullable=False),
    Column("lines", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("reserved_at", DateTime(timezone=True), nullable=False),
    Column("released_at", DateTime(timezone=True), nullable=True),
)

RESERVED = "reserved"
RELEASED = "released"


@dataclass(frozen=True)
class Shortage:
    """A line that cannot be reserved."""

    sku: str
    requested: int
    available: int


async def create(engine: AsyncEngine, catalog: Mapping[str, int]) -> None:
    """Create the tables and seed SKUs the database does not know yet."""
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
        known = set((await conn.execute(select(stock.c.sku))).scalars())
        missing = [{"sku": s, "available": n} for s, n in catalog.items() if s not in known]
        if missing:
            await conn.execute(insert(stock), missing)


async def reserve(
    conn: AsyncConnection,
    *,
    reservation_id: str,
    order_id: str,
    correlation_id: str,
    lines: Mapping[str, int],
) -> Shortage | None:
    """Reserve every line or nothing; return the first shortage, if any.

    The stock rows are locked in SKU order (``FOR UPDATE`` on PostgreSQL, where
    replicas reserve side by side; SQLite has a single writer anyway), so two
    orders never both take the last item.
    """
    for sku, quantity in sorted(lines.items()):
        query = select(stock.c.available).where(stock.c.sku == sku).with_for_update()
        available = (await conn.execute(query)).scalar_one_or_none() or 0
        if available < quantity:
            return Shortage(sku, quantity, available)
    for sku, quantity in lines.items():
        await conn.execute(
            update(stock).where(stock.c.sku == sku).values(available=stock.c.available - quantity)
        )
    await conn.execute(
        insert(reservations).values(
            reservation_id=reservation_id,
            order_id=order_id,
            correlation_id=correlation_id,
            lines=json.dumps(dict(lines)),
            status=RESERVED,
            reserved_at=datetime.now(UTC),
        )
    )
    return None


async def release(conn: AsyncConnection, order_id: str) -> str | None:
    """Give an order's reserved stock back; return the reservation id, or ``None`` if none held."""
    row = (
        await conn.execute(
            select(reservations.c.reservation_id, reservations.c.lines).where(
                reservations.c.order_id == order_id, reservations.c.status == RESERVED
            )
        )
    ).first()
    if row is None:
        return None
    for sku, quantity in json.loads(row.lines).items():
        await conn.execute(
            update(stock).where(stock.c.sku == sku).values(available=stock.c.available + quantity)
        )
    await conn.execute(
        update(reservations)
        .where(reservations.c.reservation_id == row.reservation_id)
        .values(status=RELEASED, released_at=datetime.now(UTC))
    )
    return str(row.reservation_id)
