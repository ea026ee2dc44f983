"""Synthetic order flows made of the real event classes, with correct correlation and causation.

Until the reference services run, this stands in for them: each :class:`Flow`
is what the four services would publish for one order of a given outcome, ids
and times fixed, so the same flow can be published in order, shuffled, twice,
or cut short.
"""

from __future__ import annotations

import asyncio
import random
import uuid
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from aiokafka import AIOKafkaProducer, ConsumerRecord

from choreokit.events import (
    Envelope,
    Event,
    KafkaSettings,
    Publisher,
    encode_headers,
    encode_payload,
)
from choreokit.events._kafka import ensure_topics, producer_options
from choreokit.services.example.contracts.inventory import (
    ReservedLine,
    StockRejected,
    StockReleased,
    StockReserved,
)
from choreokit.services.example.contracts.orders import (
    Address,
    CancelReason,
    OrderCancelled,
    OrderConfirmed,
    OrderLine,
    OrderPlaced,
    OrderPlacedV1,
)
from choreokit.services.example.contracts.payments import (
    PaymentAuthorized,
    PaymentDeclined,
    PaymentRefunded,
)
from choreokit.services.example.contracts.shipping import ShipmentCompleted, ShipmentFailed
from tests.support import record

DOMAIN_TOPICS = ("orders", "inventory", "payments", "shipping")


class Outcome(StrEnum):
    """The demo's outcome kinds, and flows that stop short."""

    HAPPY = "happy"
    OUT_OF_STOCK = "out_of_stock"
    PAYMENT_DECLINED = "payment_declined"
    CARRIER_FAILURE = "carrier_failure"
    STOPS_AT_PAYMENT = "stops_at_payment"
    """Stock reserved, then nothing: the payments service is down."""

    UNCOMPENSATED = "uncompensated"
    """Payment declined and the order cancelled, but the stock is never released."""


EXPECTED_STATUS = {
    Outcome.HAPPY: "completed",
    Outcome.OUT_OF_STOCK: "failed",
    Outcome.PAYMENT_DECLINED: "compensated",
    Outcome.CARRIER_FAILURE: "compensated",
    Outcome.STOPS_AT_PAYMENT: "stalled",
    Outcome.UNCOMPENSATED: "failed-uncompensated",
}
"""What the observer must judge each outcome, once its timeout has passed."""

COMPLETE = (Outcome.HAPPY, Outcome.OUT_OF_STOCK, Outcome.PAYMENT_DECLINED, Outcome.CARRIER_FAILURE)


@dataclass(frozen=True)
class Step:
    """One event of a flow, with the envelope attributes it is published with."""

    event: Event
    event_id: str
    correlation_id: str
    causation_id: str | None
    service: str
    time: datetime


@dataclass(frozen=True)
class Flow:
    """One order's events."""

    correlation_id: str
    outcome: Outcome
    steps: tuple[Step, ...]

    @property
    def expected_status(self) -> str:
        """The judgement the flow must get."""
        return EXPECTED_STATUS[self.outcome]


class _Builder:
    def __init__(self, rng: random.Random, start: datetime) -> None:
        self.rng = rng
        self.time = start
        self.steps: list[Step] = []
        self.correlation_id = ""

    def add(self, service: str, event: Event, cause: Step | None) -> Step:
        self.time += timedelta(microseconds=self.rng.randint(500, 20_000))
        event_id = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        if not self.steps:
            self.correlation_id = event_id
        step = Step(
            event=event,
            event_id=event_id,
            correlation_id=self.correlation_id,
            causation_id=cause.event_id if cause else None,
            service=service,
            time=self.time,
        )
        self.steps.append(step)
        return step


def order_flow(outcome: Outcome, *, index: int, rng: random.Random, start: datetime) -> Flow:
    """The events of order number ``index`` ending in ``outcome``."""
    b = _Builder(rng, start)
    order_id = f"o-{index}"
    placed_event: Event
    if index % 3 == 0:  # old clients still publish v1
        placed_event = OrderPlacedV1(
            order_id=order_id, customer_id="c-1", sku="SKU-1", quantity=2, unit_price_cents=1250
        )
    else:
        placed_event = OrderPlaced(
            order_id=order_id,
            customer_id=f"c-{index % 7}",
            lines=(OrderLine(sku="SKU-1", quantity=2, unit_price_cents=1250),),
            ship_to=Address(country="DE", postal_code="10115"),
        )
    placed = b.add("orders", placed_event, None)
    if outcome is Outcome.OUT_OF_STOCK:
        rejected = b.add(
            "inventory",
            StockRejected(order_id=order_id, sku="SKU-1", requested=2, available=0),
            placed,
        )
        b.add(
            "orders", OrderCancelled(order_id=order_id, reason=CancelReason.OUT_OF_STOCK), rejected
        )
        return Flow(b.correlation_id, outcome, tuple(b.steps))
    reserved = b.add(
        "inventory",
        StockReserved(
            order_id=order_id,
            reservation_id=f"r-{index}",
            lines=(ReservedLine(sku="SKU-1", quantity=2),),
            amount_cents=2500,
        ),
        placed,
    )
    if outcome is Outcome.STOPS_AT_PAYMENT:
        return Flow(b.correlation_id, outcome, tuple(b.steps))
    if outcome in (Outcome.PAYMENT_DECLINED, Outcome.UNCOMPENSATED):
        declined = b.add(
            "payments", PaymentDeclined(order_id=order_id, reason="card declined"), reserved
        )
        cancelled = b.add(
            "orders",
            OrderCancelled(order_id=order_id, reason=CancelReason.PAYMENT_DECLINED),
            declined,
        )
        if outcome is Outcome.PAYMENT_DECLINED:
            b.add(
                "inventory",
                StockReleased(order_id=order_id, reservation_id=f"r-{index}"),
                cancelled,
            )
        return Flow(b.correlation_id, outcome, tuple(b.steps))
    authorized = b.add(
        "payments",
        PaymentAuthorized(order_id=order_id, payment_id=f"p-{index}", amount_cents=2500),
        reserved,
    )
    if outcome is Outcome.HAPPY:
        shipped = b.add(
            "shipping",
            ShipmentCompleted(
                order_id=order_id,
                shipment_id=f"s-{index}",
                carrier="dhl",
                tracking_number=f"T{index}",
                price_cents=490,
            ),
            authorized,
        )
        b.add("orders", OrderConfirmed(order_id=order_id, tracking_number=f"T{index}"), shipped)
        return Flow(b.correlation_id, outcome, tuple(b.steps))
    failed = b.add(
        "shipping",
        ShipmentFailed(
            order_id=order_id,
            failed_step="pickup",
            reason="carrier down",
            compensated_steps=("label",),
        ),
        authorized,
    )
    cancelled = b.add(
        "orders", OrderCancelled(order_id=order_id, reason=CancelReason.SHIPPING_FAILED), failed
    )
    b.add("inventory", StockReleased(order_id=order_id, reservation_id=f"r-{index}"), cancelled)
    b.add(
        "payments",
        PaymentRefunded(order_id=order_id, payment_id=f"p-{index}", amount_cents=2500),
        cancelled,
    )
    return Flow(b.correlation_id, outcome, tuple(b.steps))


def mix(
    count: int,
    *,
    seed: int = 1,
    outcomes: Sequence[Outcome] = COMPLETE,
    start: datetime | None = None,
) -> list[Flow]:
    """``count`` flows cycling through ``outcomes``, deterministic for a seed."""
    rng = random.Random(seed)
    begin = start or datetime.now(UTC)
    return [
        order_flow(
            outcomes[i % len(outcomes)],
            index=i,
            rng=rng,
            start=begin + timedelta(milliseconds=i),
        )
        for i in range(count)
    ]


def long_flow(size: int, *, seed: int = 7, start: datetime | None = None) -> Flow:
    """One order flow of ``size`` events: a deep, branching causation tree ending confirmed."""
    rng = random.Random(seed)
    b = _Builder(rng, start or datetime.now(UTC))
    placed = b.add(
        "orders",
        OrderPlaced(
            order_id="o-long",
            customer_id="c-long",
            lines=(OrderLine(sku="SKU-1", quantity=1, unit_price_cents=100),),
            ship_to=Address(country="DE", postal_code="10115"),
        ),
        None,
    )
    cycle: list[tuple[str, Event]] = [
        (
            "inventory",
            StockReserved(
                order_id="o-long",
                reservation_id="r",
                lines=(ReservedLine(sku="SKU-1", quantity=1),),
                amount_cents=100,
            ),
        ),
        ("payments", PaymentAuthorized(order_id="o-long", payment_id="p", amount_cents=100)),
        (
            "shipping",
            ShipmentCompleted(
                order_id="o-long",
                shipment_id="s",
                carrier="dhl",
                tracking_number="T",
                price_cents=1,
            ),
        ),
    ]
    made = [placed]
    for i in range(1, size - 1):
        service, event = cycle[(i - 1) % len(cycle)]
        cause = made[-1] if i % 5 else made[max(0, len(made) - 10)]
        made.append(b.add(service, event, cause))
    b.add("orders", OrderConfirmed(order_id="o-long", tracking_number="T"), made[-1])
    return Flow(b.correlation_id, Outcome.HAPPY, tuple(b.steps))


def steps_of(flows: Iterable[Flow]) -> list[Step]:
    """Every step of ``flows``, flow by flow, in causal order."""
    return [step for flow in flows for step in flow.steps]


async def publish(kafka: KafkaSettings, steps: Sequence[Step], *, window: int = 500) -> None:
    """Publish ``steps`` in the given order, each with its own ids, time and source.

    Records are keyed by correlation id as the event layer does; at most
    ``window`` sends are in flight at once.
    """
    await ensure_topics(kafka, DOMAIN_TOPICS)
    producer = AIOKafkaProducer(**producer_options(kafka, idempotent=False))
    await producer.start()
    try:
        publishers: dict[str, Publisher] = {}
        pending = []
        for step in steps:
            publisher = publishers.get(step.service)
            if publisher is None:
                publisher = publishers[step.service] = Publisher(
                    producer, source=f"/services/{step.service}"
                )
            outbound = publisher.prepare(
                step.event,
                correlation_id=step.correlation_id,
                causation_id=step.causation_id,
                event_id=step.event_id,
                time=step.time,
            )
            pending.append(await publisher.send(outbound))
            if len(pending) >= window:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


def as_records(
    steps: Sequence[Step],
    *,
    partitions: int = 4,
    start_offsets: dict[tuple[str, int], int] | None = None,
) -> list[ConsumerRecord[bytes, bytes]]:
    """``steps`` as the Kafka records a consumer would read, offsets in the given order.

    Partitions are chosen from the correlation id (stable, like the key-based
    partitioner), offsets count up per partition in the order of ``steps``.
    """
    offsets = dict(start_offsets or {})
    found = []
    for step in steps:
        info = type(step.event).event_info()
        envelope = Envelope(
            id=step.event_id,
            source=f"/services/{step.service}",
            type=info.type,
            dataversion=info.version,
            time=step.time,
            correlation_id=step.correlation_id,
            causation_id=step.causation_id,
        )
        partition = zlib.crc32(step.correlation_id.encode()) % partitions
        key = (info.topic, partition)
        offset = offsets.get(key, 0)
        offsets[key] = offset + 1
        found.append(
            record(
                info.topic,
                value=encode_payload(step.event),
                headers=encode_headers(envelope),
                offset=offset,
                partition=partition,
                key=step.correlation_id.encode(),
            )
        )
    return found
