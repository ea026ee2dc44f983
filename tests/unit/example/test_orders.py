"""orders' handlers, in memory: adopt foreign orders, confirm or cancel them once."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest
from pydantic import SecretStr

from choreokit.events import ConfigurationError, KafkaSettings, Profile
from choreokit.services.example.contracts.inventory import StockRejected
from choreokit.services.example.contracts.orders import (
    CancelReason,
    OrderCancelled,
    OrderConfirmed,
)
from choreokit.services.example.contracts.payments import PaymentDeclined
from choreokit.services.example.contracts.shipping import ShipmentCompleted, ShipmentFailed
from choreokit.services.example.orders.app import build
from choreokit.services.example.orders.settings import OrdersSettings
from choreokit.services.runtime.app import Runtime
from choreokit.testing import drive
from tests.unit.example.support import order, runtime


async def test_stock_rejection_cancels_an_adopted_order_naming_the_sku(tmp_path: Path) -> None:
    async with drive(build(runtime("orders", tmp_path), OrdersSettings())[1]) as kit:
        adopted = await kit.deliver(order("o-1", ("SKU-2", 3, 10)), correlation_id="flow-1")
        rejected = await kit.deliver(
            StockRejected(order_id="o-1", sku="SKU-2", requested=3, available=1),
            correlation_id="flow-1",
        )
    assert adopted.published == ()
    cancelled = rejected.one(OrderCancelled)
    assert cancelled.reason is CancelReason.OUT_OF_STOCK
    assert cancelled.detail == "SKU-2: 3 requested, 1 available"


async def test_a_completed_shipment_confirms_the_order_and_a_later_failure_changes_nothing(
    tmp_path: Path,
) -> None:
    async with drive(build(runtime("orders", tmp_path), OrdersSettings())[1]) as kit:
        # One flow per order: the order id is bound to the flow that placed it.
        await kit.deliver(order("o-1", ("SKU-1", 1, 10)), correlation_id="flow-1")
        shipped = await kit.deliver(
            ShipmentCompleted(
                order_id="o-1", shipment_id="s", carrier="c", tracking_number="T-1", price_cents=1
            ),
            correlation_id="flow-1",
        )
        late = await kit.deliver(
            PaymentDeclined(order_id="o-1", reason="late"), correlation_id="flow-1"
        )
    assert shipped.one(OrderConfirmed).tracking_number == "T-1"
    assert late.published == ()  # settled already: not cancelled after confirmation
    assert late.complete


async def test_an_unknown_order_is_neither_confirmed_nor_cancelled(tmp_path: Path) -> None:
    async with drive(build(runtime("orders", tmp_path), OrdersSettings())[1]) as kit:
        handling = await kit.deliver(
            ShipmentFailed(order_id="nope", failed_step="quote", reason="unserved")
        )
    assert handling.complete
    assert handling.published == ()


def production(name: str, data_dir: Path) -> Runtime:
    """What ``choreo run NAME`` hands the factory under ``CHOREO_PROFILE=production``."""
    return replace(runtime(name, data_dir), kafka=KafkaSettings(profile=Profile.PRODUCTION))


@pytest.mark.parametrize("token", ["change-me", "", "  "])
def test_the_production_profile_refuses_the_placeholder_intake_token(
    tmp_path: Path, token: str
) -> None:
    """docker-compose.yml's fallback token (or an empty one) would let anyone place orders."""
    settings = OrdersSettings(token=SecretStr(token))
    with pytest.raises(
        ConfigurationError, match=r"refuses CHOREO_ORDERS_TOKEN=.*set CHOREO_ORDERS_TOKEN"
    ):
        build(production("orders", tmp_path), settings)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "orders.internal"])
def test_the_production_profile_refuses_an_open_intake_beyond_loopback(
    tmp_path: Path, host: str
) -> None:
    with pytest.raises(
        ConfigurationError,
        match=rf"without authentication on {re.escape(host)}: set CHOREO_ORDERS_TOKEN .*"
        r"or CHOREO_ORDERS_HOST=127\.0\.0\.1",
    ):
        build(production("orders", tmp_path), OrdersSettings(host=host))


@pytest.mark.parametrize(
    "settings",
    [
        OrdersSettings(host="0.0.0.0", token=SecretStr("a-real-secret-of-the-operator")),
        OrdersSettings(host="127.0.0.1"),  # loopback: reachable from this host only
    ],
    ids=["token beyond loopback", "no token on loopback"],
)
def test_the_production_profile_builds_an_intake_that_is_safe(
    tmp_path: Path, settings: OrdersSettings
) -> None:
    service, _ = build(production("orders", tmp_path), settings)
    assert service.name == "orders"


def test_the_local_profile_keeps_an_open_intake_for_development(tmp_path: Path) -> None:
    build(runtime("orders", tmp_path), OrdersSettings(host="0.0.0.0", token=SecretStr("change-me")))
