"""Orders' table: every order and where it stands."""

from __future__ import annotations

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

orders = Table(
    "orders",
    metadata,
    Column("order_id", String(64), primary_key=True),
    Column("correlation_id", String(1024), nullable=False),
    Column("event_id", String(1024), nullable=False),  # any ce_id a consumer accepts
    Column("request", Text, nullable=False),
    Column("customer_id", String(64), nullable=False),
    Column("total_cents", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("reason", String(32), nullable=True),
    Column("tracking_number", String(64), nullable=True),
    Column("placed_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

PLACED = "placed"
CONFIRMED = "confirmed"
CANCELLED = "cancelled"


@dataclass(frozen=True)
class Order:
    """An order as recorded."""

    order_id: str
    correlation_id: str
    event_id: str
    request: str
    status: str
    reason: str | None
    tracking_number: str | None


async def create(engine: AsyncEngine) -> None:
    """Create the table if it does not exist."""
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)


async def add(
    conn: AsyncConnection,
    *,
    order_id: str,
    correlation_id: str,
    event_id: str,
    request: str,
    customer_id: str,
    total_cents: int,
) -> None:
    """Record a newly placed order."""
    now = datetime.now(UTC)
    await conn.execute(
        insert(orders).values(
            order_id=order_id,
            correlation_id=correlation_id,
            event_id=event_id,
            request=request,
            customer_id=customer_id,
            total_cents=total_cents,
            status=PLACED,
            placed_at=now,
            updated_at=now,
        )
    )


async def adopt(
    conn: AsyncConnection,
    *,
    order_id: str,
    correlation_id: str,
    event_id: str,
    request: str,
    customer_id: str,
    total_cents: int,
) -> bool:
    """Record an order placed elsewhere (the gateway, another system); ``False`` if known."""
    known = (
        await conn.execute(select(orders.c.order_id).where(orders.c.order_id == order_id))
    ).first()
    if known is not None:
        return False
    await add(
        conn,
        order_id=order_id,
        correlation_id=correlation_id,
        event_id=event_id,
        request=request,
        customer_id=customer_id,
        total_cents=total_cents,
    )
    return True


async def get(conn: AsyncConnection, order_id: str) -> Order | None:
    """The order, if it exists."""
    row = (await conn.execute(select(orders).where(orders.c.order_id == order_id))).first()
    if row is None:
        return None
    return Order(
        order_id=row.order_id,
        correlation_id=row.correlation_id,
        event_id=row.event_id,
        request=row.request,
        status=row.status,
        reason=row.reason,
        tracking_number=row.tracking_number,
    )


async def settle(
    conn: AsyncConnection,
    order_id: str,
    status: str,
    *,
    reason: str | None = None,
    tracking_number: str | None = None,
) -> bool:
    """Move a placed order to its end; ``False`` if it was not placed (unknown or settled)."""
    result = await conn.execute(
        update(orders)
        .where(orders.c.order_id == order_id, orders.c.status == PLACED)
        .values(
            status=status,
            reason=reason,
            tracking_number=tracking_number,
            updated_at=datetime.now(UTC),
        )
    )
    return bool(result.rowcount)
