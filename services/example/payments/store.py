"""Payments' table: at most one payment per order, from authorization to refund."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

metadata = MetaData()

payments = Table(
    "payments",
    metadata,
    Column("payment_id", String(80), primary_key=True),
    Column("order_id", String(64), nullable=False, unique=True),
    Column("correlation_id", String(1024), nullable=False),
    Column("amount_cents", Integer, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("status", String(16), nullable=False),
    Column("decided_at", DateTime(timezone=True), nullable=False),
    Column("refunded_at", DateTime(timezone=True), nullable=True),
)

AUTHORIZED = "authorized"
DECLINED = "declined"
REFUNDED = "refunded"


@dataclass(frozen=True)
class Refund:
    """An authorization given back."""

    payment_id: str
    amount_cents: int


async def create(engine: AsyncEngine) -> None:
    """Create the table if it does not exist."""
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)


async def record(
    conn: AsyncConnection,
    *,
    payment_id: str,
    order_id: str,
    correlation_id: str,
    amount_cents: int,
    currency: str,
    status: str,
) -> None:
    """Record the decision on an order's payment (the unique order id forbids a second one)."""
    await conn.execute(
        insert(payments).values(
            payment_id=payment_id,
            order_id=order_id,
            correlation_id=correlation_id,
            amount_cents=amount_cents,
            currency=currency,
            status=status,
            decided_at=datetime.now(UTC),
        )
    )


async def refund(conn: AsyncConnection, order_id: str) -> Refund | None:
    """Refund the order's authorized payment; ``None`` if there is none to refund."""
    row = (
        await conn.execute(
            select(payments.c.payment_id, payments.c.amount_cents).where(
                payments.c.order_id == order_id, payments.c.status == AUTHORIZED
            )
        )
    ).first()
    if row is None:
        return None
    await conn.execute(
        update(payments)
        .where(payments.c.payment_id == row.payment_id)
        .values(status=REFUNDED, refunded_at=datetime.now(UTC))
    )
    return Refund(str(row.payment_id), int(row.amount_cents))
