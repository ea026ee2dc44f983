"""Which orders the demo places: a mix of kinds drawn from a seed, the same every time."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from choreokit.services.example.contracts import UNSERVED_PREFIX


class Kind(StrEnum):
    """What the demo injects into an order, and so how its flow must end."""

    HAPPY = "happy path"
    OUT_OF_STOCK = "out of stock"
    PAYMENT_DECLINED = "payment declined"
    CARRIER_FAILURE = "carrier failure"
    APPROVED = "approved by a person"
    """Above the approval amount; the demo approves it through the observer's API."""
    REJECTED = "rejected by a person"
    """Above the approval amount; the demo rejects it through the observer's API."""


class Outcome(StrEnum):
    """How a flow ended (the observer's words)."""

    COMPLETED = "completed"
    FAILED = "failed"
    COMPENSATED = "compensated"
    FAILED_UNCOMPENSATED = "failed-uncompensated"
    RUNNING = "running"


EXPECTED: dict[Kind, tuple[Outcome, str | None]] = {
    Kind.HAPPY: (Outcome.COMPLETED, None),
    Kind.OUT_OF_STOCK: (Outcome.FAILED, "out_of_stock"),
    Kind.PAYMENT_DECLINED: (Outcome.COMPENSATED, "payment_declined"),
    Kind.CARRIER_FAILURE: (Outcome.COMPENSATED, "shipping_failed"),
    Kind.APPROVED: (Outcome.COMPLETED, None),
    Kind.REJECTED: (Outcome.COMPENSATED, "payment_declined"),
}
"""The end each kind must reach, and the cancellation reason that explains it."""

WEIGHTS = {
    Kind.HAPPY: 0.55,
    Kind.OUT_OF_STOCK: 0.15,
    Kind.PAYMENT_DECLINED: 0.15,
    Kind.CARRIER_FAILURE: 0.15,
}
WEIGHTS_WITH_APPROVALS = {
    **WEIGHTS,
    Kind.HAPPY: 0.45,
    Kind.APPROVED: 0.05,
    Kind.REJECTED: 0.05,
}
"""The mix when the system asks for approvals (``choreo demo`` starting its own system)."""

APPROVAL_ABOVE_CENTS = 50_000
"""The approval amount ``choreo demo`` gives its system (``CHOREO_ORDERS_APPROVAL_ABOVE_CENTS``):
above every happy order's total, below the credit limit and the approved orders' total."""

LEGACY_SHARE = 0.25
"""Share of orders sent through the legacy API (published as ``order.placed`` v1)."""


@dataclass(frozen=True)
class PlannedOrder:
    """One order the demo will place."""

    index: int
    order_id: str
    kind: Kind
    version: int
    body: dict[str, Any]

    @property
    def path(self) -> str:
        """The intake path: ``/orders`` (v2) or ``/v1/orders`` (legacy)."""
        return "/v1/orders" if self.version == 1 else "/orders"


def plan(
    count: int, seed: int, run: str | None = None, *, approvals: bool = False
) -> list[PlannedOrder]:
    """Return ``count`` orders; the kinds and payloads depend on ``seed`` only.

    ``run`` only names the orders (so two runs against one system do not
    collide); it defaults to a fresh random value. With ``approvals``, some
    orders are above :data:`APPROVAL_ABOVE_CENTS` and wait for a person.
    """
    rng = random.Random(seed)  # noqa: S311 - a reproducible mix, not secrets
    run = run or uuid.uuid4().hex[:6]
    mix = WEIGHTS_WITH_APPROVALS if approvals else WEIGHTS
    kinds, weights = zip(*mix.items(), strict=True)
    orders = []
    for index in range(count):
        kind = rng.choices(kinds, weights)[0]
        version = 1 if rng.random() < LEGACY_SHARE else 2
        order_id = f"demo-{seed}-{run}-{index:05d}"
        orders.append(
            PlannedOrder(index, order_id, kind, version, _body(rng, kind, version, order_id))
        )
    return orders


def _body(rng: random.Random, kind: Kind, version: int, order_id: str) -> dict[str, Any]:
    customer = f"cust-{rng.randrange(1, 500):04d}"
    postal = (
        f"{UNSERVED_PREFIX}{rng.randrange(100, 999)}"
        if kind is Kind.CARRIER_FAILURE
        else f"{rng.randrange(10000, 89999)}"
    )
    country = rng.choice(["DE", "FR", "NL"])
    lines = [
        {
            "sku": f"SKU-{rng.randrange(1, 10)}",
            "quantity": rng.randrange(1, 4),
            "unit_price_cents": rng.randrange(500, 5000),
        }
        for _ in range(1 if version == 1 else rng.randrange(1, 4))
    ]
    if kind is Kind.OUT_OF_STOCK:
        lines[-1] = {"sku": "SKU-RARE", "quantity": 1, "unit_price_cents": 9900}
    if kind is Kind.PAYMENT_DECLINED:
        lines[0] = {"sku": lines[0]["sku"], "quantity": 40, "unit_price_cents": 5000}
    if kind in (Kind.APPROVED, Kind.REJECTED):  # 60,000 cents: waits for a person
        lines = [{"sku": lines[0]["sku"], "quantity": 12, "unit_price_cents": 5000}]
    if version == 1:
        line = lines[0]
        return {
            "order_id": order_id,
            "customer_id": customer,
            "sku": line["sku"],
            "quantity": line["quantity"],
            "unit_price_cents": line["unit_price_cents"],
            "country": country,
            "postal_code": postal,
        }
    return {
        "order_id": order_id,
        "customer_id": customer,
        "lines": lines,
        "ship_to": {"country": country, "postal_code": postal},
    }
