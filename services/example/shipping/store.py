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
from typing import Any

from sqlalchemy import Column, MetaData, String, Table, Text, or_, update
from sqlalchemy.ext.asyncio import AsyncEngine

from choreokit.events import Envelope

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
    statement = _insert(engine)(shipments).values(
        order_id=order_id, country=country, postal_code=postal_code
    )
    async with engine.begin() as conn:
        await conn.execute(
            statement.on_conflict_do_update(
                index_elements=[shipments.c.order_id],
                set_={
                    "country": statement.excluded.country,
                    "postal_code": statement.excluded.postal_code,
                },
                where=shipments.c.country.is_(None),
            )
        )


async def record_payment(engine: AsyncEngine, order_id: str, payment: Envelope) -> None:
    """Record the order's authorized payment (the first record of it wins)."""
    statement = _insert(engine)(shipments).values(
        order_id=order_id, payment=json.dumps(payment.to_dict())
    )
    async with engine.begin() as conn:
        await conn.execute(
            statement.on_conflict_do_update(
                index_elements=[shipments.c.order_id],
                set_={"payment": statement.excluded.payment},
                where=shipments.c.payment.is_(None),
            )
        )


async def claim(engine: AsyncEngine, order_id: str, event_id: str) -> Ready | None:
    """Claim the shipment for the handling of ``event_id`` if both halves are here.

    Returns the pair if this event's handling owns the shipment (now, or since
    an earlier try of the same event), ``None`` otherwise.
    """
    async with engine.begin() as conn:
        row = (
            await conn.execute(
                update(shipments)
                .where(
                    shipments.c.order_id == order_id,
                    shipments.c.country.is_not(None),
                    shipments.c.payment.is_not(None),
                    or_(shipments.c.claimed_by.is_(None), shipments.c.claimed_by == event_id),
                )
                .values(claimed_by=event_id)
                .returning(shipments.c.country, shipments.c.postal_code, shipments.c.payment)
            )
        ).first()
    if row is None:
        return None
    return Ready(row.country, row.postal_code, Envelope.from_dict(json.loads(row.payment)))


def _insert(engine: AsyncEngine) -> Any:
    """INSERT ... ON CONFLICT of the engine's dialect (SQLite and PostgreSQL have one)."""
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert
