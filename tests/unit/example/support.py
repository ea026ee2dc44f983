"""The reference services built as ``choreo run`` builds them, for choreokit.testing.drive."""

from __future__ import annotations

from pathlib import Path

from choreokit.services.example.contracts.orders import Address, OrderLine, OrderPlaced
from choreokit.services.runtime.app import Runtime


def runtime(name: str, data_dir: Path) -> Runtime:
    """What ``choreo run NAME`` hands the factory, its databases in ``data_dir``."""
    return Runtime(name=name, data_dir=data_dir)


def order(order_id: str, *lines: tuple[str, int, int], postal_code: str = "10115") -> OrderPlaced:
    """An order of ``(sku, quantity, unit price)`` lines, shipped to Germany."""
    return OrderPlaced(
        order_id=order_id,
        customer_id="c-1",
        lines=tuple(OrderLine(sku=s, quantity=q, unit_price_cents=p) for s, q, p in lines),
        ship_to=Address(country="DE", postal_code=postal_code),
    )
