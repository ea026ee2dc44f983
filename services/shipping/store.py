"""Shipping's join of two streams: an order's destination and its authorized payment.

``order.placed`` (orders topic) and ``payment.authorized`` (payments topic)
arrive in no particular order. Each handler records its half; whichever makes
the pair complete claims the shipment with one atomic update, and only the
claimant runs it. The claim names the event whose handling made it, so a
redelivery of that event continues the shipment and any other event leaves
it alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import Column, MetaData, String, Table, Text, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from events import Envelope

metadata = MetaData()

shipments = Table(
    "shipping_shipments",
    metadata,
    Column("order_id", String(64), primary_key=True),
    Column("country", String(2), nullable=True),
    Column("postal_code", String(16), nullable=True),
    Column("payment", Text, nullable=True),
    Column("claimed_by", String(1024), nullable=True),
)


@dataclass(frozen=True)
class Ready:
    """Both halves are here and this event's handling owns the shipment."""

    country: str
    postal_code: str
    payment: Envelope


async def create(engine: AsyncEngine) -> None:
    """Create the table if it does not exist."""
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)


async def record_destination(
    engine: AsyncEngine, order_id: str, country: str, postal_code: str
) -> None:
    """Record where the order goes (the first record of it wins)."""
    await _ensure_row(engine, order_id)
    async with engine.begin() as conn:
        await conn.execute(
            update(shipments)
            .where(shipments.c.order_id == order_id, shipments.c.country.is_(None))
            .values(country=country, postal_code=postal_code)
        )


async def record_payment(engine: AsyncEngine, order_id: str, payment: Envelope) -> None:
    """Record the order's authorized payment (the first record of it wins)."""
    await _ensure_row(engine, order_id)
    async with engine.begin() as conn:
        await conn.execute(
            update(shipments)
            .where(shipments.c.order_id == order_id, shipments.c.payment.is_(None))
            .values(payment=json.dumps(payment.to_dict()))
        )


async def claim(engine: AsyncEngine, order_id: str, event_id: str) -> Ready | None:
    """Claim the shipment for the handling of ``event_id`` if both halves are here.

    Returns the pair if this event's handling owns the shipment (now, or since
    an earlier try of the same event), ``None`` otherwise.
    """
    async with engine.begin() as conn:
        await conn.execute(
            update(shipments)
            .where(
                shipments.c.order_id == order_id,
                shipments.c.claimed_by.is_(None),
                shipments.c.country.is_not(None),
                shipments.c.payment.is_not(None),
            )
            .values(claimed_by=event_id)
        )
        row = (
            await conn.execute(select(shipments).where(shipments.c.order_id == order_id))
        ).first()
    if row is None or row.claimed_by != event_id:
        return None
    return Ready(row.country, row.postal_code, Envelope.from_dict(json.loads(row.payment)))


async def _ensure_row(engine: AsyncEngine, order_id: str) -> None:
    async with engine.begin() as conn:
        exists = (
            await conn.execute(select(shipments.c.order_id).where(shipments.c.order_id == order_id))
        ).first()
        if exists is None:
            await conn.execute(insert(shipments).values(order_id=order_id))
