"""Shipping's in-service orchestration drawn inside its lane (issue 14, point 5): the real
`choreo run shipping` handles two orders over a real broker, its carrier failing every first
call (so each step is retried) and one destination unserved (pickup fails, the label is voided);
`choreo run saga-observer` reads the orchestration.run events it publishes; a real browser finds
quote, label and pickup in shipping's lane of the timeline and under the report in the graph."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import Browser, Page, expect

from choreokit.events import KafkaSettings
from choreokit.events._kafka import ensure_topics
from choreokit.services.example.contracts.orders import Address, OrderLine, OrderPlaced
from choreokit.services.example.contracts.payments import PaymentAuthorized
from choreokit.services.example.contracts.shipping import UNSERVED_PREFIX
from choreokit.services.runtime import EmbeddedBroker, free_port
from tests.e2e.test_observer_ui import browser, watch_errors  # noqa: F401 - a fixture
from tests.observer_fixtures import ARTIFACTS, CHOREO, ROOT, ObserverProcess, blocking
from tests.order_flows import Step, publish
from tests.support import unique, wait_until

STEPS = ["quote", "label", "pickup"]


@dataclass(frozen=True)
class Shipped:
    observer: ObserverProcess
    delivered: str
    refused: str


def order_steps(correlation_id: str, order_id: str, postal_code: str) -> list[Step]:
    """order.placed from orders and payment.authorized from payments: what shipping joins."""
    now = datetime.now(UTC)
    placed = Step(
        OrderPlaced(
            order_id=order_id,
            customer_id="c-1",
            lines=(OrderLine(sku="SKU-1", quantity=1, unit_price_cents=100),),
            ship_to=Address(country="DE", postal_code=postal_code),
        ),
        f"{correlation_id}-placed",
        correlation_id,
        None,
        "orders",
        now,
    )
    paid = Step(
        PaymentAuthorized(order_id=order_id, payment_id=f"pay-{order_id}", amount_cents=100),
        f"{correlation_id}-paid",
        correlation_id,
        placed.event_id,
        "payments",
        now + timedelta(milliseconds=5),
    )
    return [placed, paid]


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shipped]:
    tmp = tmp_path_factory.mktemp("observer-orchestration")
    delivered, refused = unique("ship-ok"), unique("ship-refused")
    with EmbeddedBroker(port=free_port(), log=tmp / "tansu.log") as broker:
        kafka = KafkaSettings(bootstrap=broker.bootstrap)
        blocking(ensure_topics(kafka, ["orders", "payments", "shipping", "orchestrations"]))
        ready = tmp / "shipping.ready"
        env = {
            **os.environ,
            "CHOREO_KAFKA_BOOTSTRAP": kafka.bootstrap,
            "CHOREO_DATA_DIR": str(tmp / "shipping"),
            "CHOREO_READY_FILE": str(ready),
            "CHOREO_METRICS_PORT": "0",
            "CHOREO_SHIPPING_CARRIER_FAILURE_RATE": "1.0",  # every step's first try fails
            "CHOREO_SHIPPING_CARRIER_LATENCY": "1ms",
            "PYTHONUNBUFFERED": "1",
            "CHOREO_EXAMPLE": "1",
        }
        with (tmp / "shipping.log").open("ab") as log:
            shipping = subprocess.Popen(
                [str(CHOREO), "run", "shipping"],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        observer = ObserverProcess(kafka, f"sqlite:///{tmp / 'observer.sqlite3'}", tmp).start()
        try:
            log_file = tmp / "shipping.log"

            def up() -> bool:
                assert shipping.poll() is None, log_file.read_text(errors="replace")[-3000:]
                return ready.exists()

            wait_until(up, timeout=60, what="shipping ready")
            blocking(
                publish(
                    kafka,
                    [
                        *order_steps(delivered, f"o-{delivered}", "10115"),
                        *order_steps(refused, f"o-{refused}", f"{UNSERVED_PREFIX}123"),
                    ],
                )
            )

            def reported(flow: str) -> bool:
                found = observer.try_get(f"/api/flows/{flow}")
                return bool(found and found.get("orchestrations"))

            wait_until(
                lambda: reported(delivered) and reported(refused),
                timeout=60,
                what="both shipment runs reported to the observer",
            )
            yield Shipped(observer, delivered, refused)
        finally:
            shipping.terminate()
            shipping.wait(30)
            assert observer.stop() == 0, observer.tail()


def lane_span(page: Page, service: str) -> tuple[float, float]:
    """The horizontal extent of ``service``'s lane, from its header."""
    header = page.get_by_test_id("lane-header").filter(has_text=service)
    box = header.bounding_box()
    assert box is not None
    return box["x"], box["x"] + box["width"]


def assert_in_lane(page: Page, service: str) -> None:
    """Each step's bar and status mark lie within ``service``'s lane (its header's extent)."""
    left, right = lane_span(page, service)
    marks = page.locator('[data-testid="lane-step"] rect:is(.orch-bar, .orch-step)').all()
    assert len(marks) == 2 * len(STEPS)
    for mark in marks:
        box = mark.bounding_box()
        assert box is not None
        assert left <= box["x"], (box, left, right)
        assert box["x"] + box["width"] <= right, (box, left, right)


def test_shipping_steps_with_their_retries_are_drawn_in_shippings_lane(
    browser: Browser,  # noqa: F811 - the fixture imported above
    shipped: Shipped,
) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors = watch_errors(page)
    page.goto(f"{shipped.observer.url}/#/flow/{shipped.delivered}")
    expect(page.get_by_test_id("swimlanes")).to_be_visible()
    steps = page.get_by_test_id("lane-step")
    expect(steps).to_have_count(3)
    assert steps.evaluate_all("nodes => nodes.map(n => n.dataset.step)") == STEPS
    assert set(steps.evaluate_all("nodes => nodes.map(n => n.dataset.service)")) == {"shipping"}
    assert set(steps.evaluate_all("nodes => nodes.map(n => n.dataset.status)")) == {"done"}
    # The carrier failed every first call: each step took more than one try, and says so.
    for attempts in steps.evaluate_all("nodes => nodes.map(n => Number(n.dataset.attempts))"):
        assert attempts > 1
    expect(steps.first).to_contain_text("retr")
    expect(page.get_by_test_id("lane-run")).to_contain_text("shipment run: succeeded")
    assert_in_lane(page, "shipping")

    steps.first.click()
    expect(page.get_by_test_id("event-detail")).to_contain_text("orchestration.run")

    page.get_by_role("tab", name="Causation graph").click()
    graph_steps = page.get_by_test_id("graph-step")
    expect(graph_steps).to_have_count(3)
    assert graph_steps.evaluate_all("nodes => nodes.map(n => n.dataset.step)") == STEPS
    assert errors == []


def test_a_failed_pickup_and_the_voided_label_are_drawn_in_shippings_lane(
    browser: Browser,  # noqa: F811 - the fixture imported above
    shipped: Shipped,
) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors = watch_errors(page)
    page.goto(f"{shipped.observer.url}/#/flow/{shipped.refused}")
    steps = page.get_by_test_id("lane-step")
    expect(steps).to_have_count(3)
    statuses = dict(
        zip(
            steps.evaluate_all("nodes => nodes.map(n => n.dataset.step)"),
            steps.evaluate_all("nodes => nodes.map(n => n.dataset.status)"),
            strict=True,
        )
    )
    assert statuses == {"quote": "done", "label": "compensated", "pickup": "failed"}
    expect(steps.nth(1)).to_contain_text("compensated")
    expect(steps.nth(2)).to_contain_text("failed")
    expect(page.get_by_test_id("lane-run")).to_contain_text("compensated, pickup failed")
    assert_in_lane(page, "shipping")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "observer-orchestration-lane.png"), full_page=True)

    page.get_by_role("tab", name="Causation graph").click()
    graph_steps = page.get_by_test_id("graph-step")
    expect(graph_steps).to_have_count(3)
    expect(graph_steps.nth(1)).to_have_attribute("data-status", "compensated")
    assert errors == []
