"""Checks of the services' databases after a run: compensation done, nothing twice."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from choreokit.services.example.inventory.settings import DEFAULT_CATALOG
from tests.e2e.system import rows


def check_databases(data_dir: Path) -> dict[str, int]:
    """Assert the business invariants of the order flow; return a few counts."""
    import sqlite3

    orders = sqlite3.connect(data_dir / "orders.sqlite3")
    inventory = sqlite3.connect(data_dir / "inventory.sqlite3")
    payments = sqlite3.connect(data_dir / "payments.sqlite3")
    carrier = sqlite3.connect(data_dir / "carrier.sqlite3")
    status = dict(rows(orders, "select order_id, status from orders"))
    reason = dict(rows(orders, "select order_id, reason from orders"))
    assert all(s in {"confirmed", "cancelled"} for s in status.values()), Counter(status.values())

    reservations = {
        o: (s, json.loads(lines))
        for o, s, lines in rows(
            inventory, "select order_id, status, lines from inventory_reservations"
        )
    }
    pay = {
        o: (s, a)
        for o, s, a in rows(payments, "select order_id, status, amount_cents from payments")
    }
    labels = Counter(o for (o,) in rows(carrier, "select order_id from carrier_labels"))
    voided = {
        o
        for (o,) in rows(carrier, "select order_id from carrier_labels where voided_at is not null")
    }

    for order_id, state in status.items():
        if state == "cancelled":
            # every cancelled order has its stock back and its authorized payment refunded
            if order_id in reservations:
                assert reservations[order_id][0] == "released", order_id
            if order_id in pay:
                assert pay[order_id][0] in {"refunded", "declined"}, (order_id, pay[order_id])
        else:
            assert reservations[order_id][0] == "reserved", order_id
            assert pay[order_id][0] == "authorized", order_id
            assert labels[order_id] == 1, order_id
        # no payment without a reservation
        if order_id in pay:
            assert order_id in reservations, f"{order_id} was charged without a reservation"
        if reason.get(order_id) == "out_of_stock":
            assert order_id not in reservations, order_id
            assert order_id not in pay, order_id
        if reason.get(order_id) == "shipping_failed":
            assert pay[order_id][0] == "refunded", order_id
            assert labels[order_id] == 1, order_id
            assert order_id in voided, order_id
    # no second label, ever
    assert all(n == 1 for n in labels.values()), [o for o, n in labels.items() if n != 1]
    # stock: what is missing from the shelves is exactly what confirmed orders hold
    held: Counter[str] = Counter()
    for state, lines in reservations.values():
        if state == "reserved":
            for sku, quantity in lines.items():
                held[sku] += quantity
    stock = dict(rows(inventory, "select sku, available from inventory_stock"))
    for sku, initial in DEFAULT_CATALOG.items():
        assert stock[sku] == initial - held[sku], (sku, stock[sku], initial, held[sku])
    return {
        "orders": len(status),
        "labels": sum(labels.values()),
        "refunds": sum(1 for s, _ in pay.values() if s == "refunded"),
        "released": sum(1 for s, _ in reservations.values() if s == "released"),
    }
