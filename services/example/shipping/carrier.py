"""A simulated parcel carrier: another company's API, with idempotency keys, latency and faults.

Every request carries an idempotency key; a repeated key returns the first
answer and changes nothing, as real carrier APIs do. Transient faults are
deterministic per (key, call) and never more than two in a row for one key,
so they clear within the shipping service's retry budget. Pickups are refused
for postal codes starting with ``99`` (an area the carrier does not serve):
the demo's injected carrier failure.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Column, DateTime, MetaData, String, Table, Text, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from choreokit.events import ChoreoError
from choreokit.events.orchestration import StepFailedError
from choreokit.services.example.contracts.shipping import UNSERVED_PREFIX

CARRIER = "simulated-parcel"
MAX_TRANSIENT_IN_A_ROW = 2

metadata = MetaData()

requests = Table(
    "carrier_requests",
    metadata,
    Column("idempotency_key", String(1024), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("response", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

labels = Table(
    "carrier_labels",
    metadata,
    Column("label_id", String(128), primary_key=True),
    Column("order_id", String(64), nullable=False),
    Column("tracking_number", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("voided_at", DateTime(timezone=True), nullable=True),
)

pickups = Table(
    "carrier_pickups",
    metadata,
    Column("pickup_id", String(128), primary_key=True),
    Column("label_id", String(128), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("cancelled_at", DateTime(timezone=True), nullable=True),
)


class CarrierUnavailableError(ChoreoError):
    """The carrier did not answer this time; try again."""

    retriable = True


class SimulatedCarrier:
    """The carrier's side of the conversation, with its own database."""

    def __init__(self, engine: AsyncEngine, *, latency: timedelta, failure_rate: float) -> None:
        self._engine = engine
        self._latency = latency.total_seconds()
        self._failure_rate = failure_rate
        self._calls: Counter[str] = Counter()

    async def create_tables(self) -> None:
        """Create the carrier's tables."""
        async with self._engine.begin() as conn:
            await conn.run_sync(metadata.create_all)

    async def quote(self, key: str, *, order_id: str, country: str) -> dict[str, Any]:
        """Price a parcel."""
        return await self._once(
            key,
            "quote",
            lambda: {
                "quote_id": f"q-{order_id}",
                "carrier": CARRIER,
                "price_cents": 499 if country == "DE" else 1299,
            },
        )

    async def create_label(self, key: str, *, order_id: str) -> dict[str, Any]:
        """Buy a shipping label (the side effect that must never happen twice)."""
        digest = hashlib.sha256(key.encode()).hexdigest()[:12].upper()
        response = {"label_id": f"lbl-{digest}", "tracking_number": f"SP{digest}"}

        async def record(conn: AsyncConnection) -> None:
            await conn.execute(
                insert(labels).values(
                    label_id=response["label_id"],
                    order_id=order_id,
                    tracking_number=response["tracking_number"],
                    created_at=datetime.now(UTC),
                )
            )

        return await self._once(key, "label", lambda: response, effect=record)

    async def void_label(self, label_id: str) -> None:
        """Void a label that will not be used."""
        await self._delay()
        async with self._engine.begin() as conn:
            await conn.execute(
                update(labels)
                .where(labels.c.label_id == label_id, labels.c.voided_at.is_(None))
                .values(voided_at=datetime.now(UTC))
            )

    async def book_pickup(self, key: str, *, label_id: str, postal_code: str) -> dict[str, Any]:
        """Book a pickup for a labelled parcel.

        Raises:
            StepFailedError: The carrier does not serve the postal code.
        """
        if postal_code.startswith(UNSERVED_PREFIX):
            await self._delay()
            raise StepFailedError(f"{CARRIER} does not pick up in postal area {postal_code}")
        pickup_id = f"pu-{label_id}"

        async def record(conn: AsyncConnection) -> None:
            await conn.execute(
                insert(pickups).values(
                    pickup_id=pickup_id, label_id=label_id, created_at=datetime.now(UTC)
                )
            )

        return await self._once(key, "pickup", lambda: {"pickup_id": pickup_id}, effect=record)

    async def cancel_pickup(self, pickup_id: str) -> None:
        """Cancel a booked pickup."""
        await self._delay()
        async with self._engine.begin() as conn:
            await conn.execute(
                update(pickups)
                .where(pickups.c.pickup_id == pickup_id, pickups.c.cancelled_at.is_(None))
                .values(cancelled_at=datetime.now(UTC))
            )

    async def _delay(self) -> None:
        if self._latency:
            await asyncio.sleep(self._latency)

    def _transient_fault(self, key: str) -> bool:
        self._calls[key] += 1
        calls = self._calls[key]
        if calls > MAX_TRANSIENT_IN_A_ROW or not self._failure_rate:
            return False
        draw = int(hashlib.sha256(f"{key}#{calls}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        return draw < self._failure_rate

    async def _once(
        self,
        key: str,
        kind: str,
        respond: Callable[[], dict[str, Any]],
        effect: Callable[[AsyncConnection], Awaitable[None]] | None = None,
    ) -> dict[str, Any]:
        await self._delay()
        async with self._engine.connect() as conn:
            earlier = (
                await conn.execute(
                    select(requests.c.response).where(requests.c.idempotency_key == key)
                )
            ).scalar_one_or_none()
        if earlier is not None:
            result: dict[str, Any] = json.loads(earlier)
            return result
        if self._transient_fault(key):
            raise CarrierUnavailableError(f"{CARRIER} timed out on {kind} (simulated)")
        response = respond()
        try:
            # The answer and its effect commit together: no label without its record.
            async with self._engine.begin() as conn:
                await conn.execute(
                    insert(requests).values(
                        idempotency_key=key,
                        kind=kind,
                        response=json.dumps(response),
                        created_at=datetime.now(UTC),
                    )
                )
                if effect is not None:
                    await effect(conn)
        except IntegrityError:
            return await self._once(key, kind, respond, effect)  # a concurrent twin won
        return response
