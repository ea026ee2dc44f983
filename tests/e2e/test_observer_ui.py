"""The observer's web UI in a real browser (Chromium, headless), served by `choreo run
saga-observer`: filter to a compensated flow, open it, find the swimlanes and the Jaeger link;
a rejected flow says so; a 1,000-event flow stays usable because only the rows in view are
drawn."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from playwright.sync_api import Browser, Page, expect, sync_playwright

from choreokit.events import Envelope, KafkaSettings, encode_headers
from choreokit.events._kafka import ensure_topics
from choreokit.services.runtime import EmbeddedBroker, free_port
from tests.observer_fixtures import ARTIFACTS, ObserverProcess, blocking
from tests.order_flows import Flow, Outcome, long_flow, mix, publish, steps_of
from tests.support import wait_until

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
JAEGER = "http://jaeger.example.test:16686"
REFUSED = "ui-refused-order"


async def publish_refused_order(kafka: KafkaSettings) -> None:
    """An order.placed no consumer can read, and inventory's dead letter of it."""
    await ensure_topics(kafka, ["orders", "orders.dlq"])
    headers = encode_headers(
        Envelope(
            id="ui-refused-1",
            source="/services/orders",
            type="order.placed",
            dataversion=2,
            time=datetime.now(UTC),
            correlation_id=REFUSED,
        )
    )
    value = json.dumps({"order_id": "o-1", "lines": "not a list"}).encode()
    letter = [
        *headers,
        ("choreo_dlq_error_type", b"InvalidPayloadError"),
        ("choreo_dlq_error_message", b"lines: not a list"),
        ("choreo_dlq_original_topic", b"orders"),
        ("choreo_dlq_original_partition", b"0"),
        ("choreo_dlq_original_offset", b"0"),
        ("choreo_dlq_consumer_group", b"inventory"),
        ("choreo_dlq_attempts", b"1"),
    ]
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait("orders", value, key=REFUSED.encode(), headers=headers)
        await producer.send_and_wait("orders.dlq", value, key=REFUSED.encode(), headers=letter)
    finally:
        await producer.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is missing: scripts/test installs Debian's 'chromium' package")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def observed(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ObserverProcess, list[Flow], Flow]]:
    """One broker and one `choreo run saga-observer` for the module's tests (they only read)."""
    tmp_path = tmp_path_factory.mktemp("observer-ui")
    flows = mix(24, seed=41, outcomes=list(Outcome))
    big = long_flow(1000)
    with EmbeddedBroker(port=free_port(), log=tmp_path / "tansu.log") as broker:
        kafka = KafkaSettings(bootstrap=broker.bootstrap)
        blocking(publish(kafka, steps_of([*flows, big])))
        blocking(publish_refused_order(kafka))
        observer = ObserverProcess(
            kafka,
            f"sqlite:///{tmp_path / 'observer.sqlite3'}",
            tmp_path,
            env={"CHOREO_JAEGER_URL": JAEGER, "CHOREO_OBSERVER_TIMEOUT": "2s"},
        ).start()

        def judged() -> bool:
            counts = observer.try_get("/api/counts")
            return bool(counts and counts["total"] == 26 and counts["by_status"]["running"] == 0)

        try:
            wait_until(judged, timeout=90, what="every flow judged")
            yield observer, flows, big
        finally:
            assert observer.stop() == 0, observer.tail()


def watch_errors(page: Page) -> list[str]:
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    return errors


def test_a_compensated_flow_is_found_opened_and_drawn_by_service(
    browser: Browser, observed: tuple[ObserverProcess, list[Flow], Flow]
) -> None:
    observer, flows, _ = observed
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors = watch_errors(page)
    page.goto(observer.url + "/")
    expect(page.get_by_test_id("flow-row").first).to_be_visible()

    page.get_by_test_id("filter-status").select_option("compensated")
    compensated = {f.correlation_id for f in flows if f.expected_status == "compensated"}
    rows = page.get_by_test_id("flow-row")
    expect(rows).to_have_count(len(compensated))
    for status in rows.evaluate_all("rows => rows.map(r => r.dataset.status)"):
        assert status == "compensated"

    page.get_by_test_id("flow-link").first.click()
    expect(page.get_by_test_id("flow-status")).to_have_text("compensated")
    correlation_id = page.url.rsplit("/", 1)[1]
    assert correlation_id in compensated

    lanes = page.get_by_test_id("swimlanes")
    expect(lanes).to_be_visible()
    headers = page.get_by_test_id("lane-header").all_inner_texts()
    flow = next(f for f in flows if f.correlation_id == correlation_id)
    assert sorted(headers) == sorted({step.service for step in flow.steps})
    expect(page.get_by_test_id("swimlane-row")).to_have_count(len(flow.steps))

    jaeger = page.get_by_test_id("jaeger-link").first
    expect(jaeger).to_be_visible()
    href = jaeger.get_attribute("href")
    assert href is not None
    assert href.startswith(JAEGER + "/")
    assert "conversation_id" in href

    page.get_by_test_id("swimlane-row").last.click()
    expect(page.get_by_test_id("event-detail")).to_contain_text(flow.steps[-1].event_id)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "observer-compensated-flow.png"), full_page=True)
    assert errors == []


def test_a_stalled_flow_shows_its_expected_next_step(
    browser: Browser, observed: tuple[ObserverProcess, list[Flow], Flow]
) -> None:
    observer, flows, _ = observed
    stalled = next(f for f in flows if f.outcome is Outcome.STOPS_AT_PAYMENT)
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    errors = watch_errors(page)
    page.goto(f"{observer.url}/#/flow/{stalled.correlation_id}")
    expect(page.get_by_test_id("flow-status")).to_have_text("stalled")
    expected = page.get_by_test_id("expected-next")
    expect(expected).to_contain_text("payment.authorized | payment.declined")
    expect(expected).to_contain_text("after stock.reserved")
    assert errors == []


def test_a_rejected_flow_says_that_nothing_of_it_took_effect(
    browser: Browser, observed: tuple[ObserverProcess, list[Flow], Flow]
) -> None:
    observer, _, _ = observed
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    errors = watch_errors(page)
    page.goto(observer.url + "/")
    expect(page.get_by_test_id("flow-row").first).to_be_visible()
    page.get_by_test_id("filter-status").select_option("rejected")
    expect(page.get_by_test_id("flow-row")).to_have_count(1)
    expect(page.get_by_test_id("count-rejected")).to_contain_text("1")
    page.goto(f"{observer.url}/#/flow/{REFUSED}")
    expect(page.get_by_test_id("flow-status")).to_have_text("rejected")
    expect(page.get_by_test_id("rejected-note")).to_contain_text("refused every event")
    assert errors == []


def test_a_thousand_event_flow_stays_usable(
    browser: Browser, observed: tuple[ObserverProcess, list[Flow], Flow]
) -> None:
    observer, _, big = observed
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors = watch_errors(page)
    page.goto(f"{observer.url}/#/?q={big.correlation_id}")
    expect(page.get_by_test_id("flow-row")).to_have_count(1)
    page.get_by_test_id("flow-link").click()
    lanes = page.get_by_test_id("swimlanes")
    expect(lanes).to_have_attribute("data-events", "1000")
    drawn = page.get_by_test_id("swimlane-row").count()
    assert 0 < drawn < 100, f"only the rows in view are in the page, not {drawn}"

    lanes.evaluate("node => { node.scrollTop = node.scrollHeight; }")
    last = page.locator(f'[data-testid="swimlane-row"][data-event="{big.steps[-1].event_id}"]')
    expect(last).to_have_attribute("data-type", "order.confirmed")
    assert page.get_by_test_id("swimlane-row").count() < 100

    page.get_by_role("tab", name="Causation graph").click()
    tree = page.get_by_test_id("graph-tree")
    expect(tree.get_by_test_id("graph-row").first).to_contain_text("order.placed")
    assert tree.get_by_test_id("graph-row").count() < 100
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "observer-1000-event-flow.png"))
    assert errors == []


def test_the_topology_page_draws_every_service(
    browser: Browser, observed: tuple[ObserverProcess, list[Flow], Flow]
) -> None:
    observer, _, _ = observed
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors = watch_errors(page)
    page.goto(observer.url + "/#/topology")
    expect(page.get_by_test_id("topology-node")).to_have_count(4)
    expect(page.get_by_test_id("reactions")).to_contain_text("stock.reserved")
    assert errors == []
