"""The reference services built as ``choreo run`` builds them, driven by choreokit.testing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from choreokit.events import Service
from choreokit.services.example.contracts.orders import Address, OrderLine, OrderPlaced
from choreokit.services.runtime.app import Runtime, ServiceApp
from choreokit.testing import ServiceKit


def runtime(name: str, data_dir: Path) -> Runtime:
    """What ``choreo run NAME`` hands the factory, its databases in ``data_dir``."""
    return Runtime(name=name, data_dir=data_dir)


@asynccontextmanager
async def driven(built: tuple[Service, ServiceApp]) -> AsyncIterator[ServiceKit]:
    """Run the app's own set-up (tables, seed data), drive its service in memory, tear down."""
    service, app = built
    for step in app._setup:
        await step()
    try:
        async with ServiceKit(service) as kit:
            yield kit
    finally:
        for step in app._teardown:
            await step()


def order(order_id: str, *lines: tuple[str, int, int], postal_code: str = "10115") -> OrderPlaced:
    """An order of ``(sku, quantity, unit price)`` lines, shipped to Germany."""
    return OrderPlaced(
        order_id=order_id,
        customer_id="c-1",
        lines=tuple(OrderLine(sku=s, quantity=q, unit_price_cents=p) for s, q, p in lines),
        ship_to=Address(country="DE", postal_code=postal_code),
    )
