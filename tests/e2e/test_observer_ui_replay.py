"""The observer's UI replays a dead letter in a real browser (Chromium, headless): inside its
flow, with an operator token; the flow then completes and the dead letter shows resolved."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, expect

from choreokit.events import KafkaSettings, RetryPolicy, Service
from choreokit.services.runtime import EmbeddedBroker, free_port
from choreokit.services.saga_observer.access import DEV_TOKEN_FILE
from tests.e2e.test_observer_ui import browser, watch_errors
from tests.integration.dlq_events import ItemAdded, ItemSeen, registry
from tests.observer_fixtures import ObserverProcess
from tests.support import unique, wait_until

__all__ = ["browser"]

SPEC = """\
sagas:
  - name: items
    start: dlqtest.item.added
    success: [dlqtest.item.seen]
    timeout: 300s
"""


class Consumer(threading.Thread):
    """A consuming service on a loop of its own; fails every record until ``upgraded``."""

    def __init__(self, kafka: KafkaSettings) -> None:
        super().__init__(daemon=True)
        self.kafka = kafka
        self.upgraded = False
        self.flow: str | None = None
        self.service = Service(
            unique("fragile"),
            registry=registry,
            settings=kafka,
            retry=RetryPolicy(max_attempts=1),
            publishes=[ItemSeen],
        )
        self._loop_stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

        @self.service.handler(ItemAdded)
        async def see(event: ItemAdded, ctx: Any) -> None:
            if not self.upgraded:
                raise RuntimeError(f"no stock record for item {event.n}")
            await ctx.publish(ItemSeen(n=event.n))

    def run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_stop = asyncio.Event()
        producer = Service(unique("producer"), registry=registry, settings=self.kafka)
        async with self.service, producer:
            envelope = await producer.publish(ItemAdded(n=1, label="ok"))
            self.flow = envelope.correlation_id
            await self._loop_stop.wait()

    def stop(self) -> None:
        if self._loop is not None and self._loop_stop is not None:
            self._loop.call_soon_threadsafe(self._loop_stop.set)
        self.join(timeout=30)


@pytest.fixture
def scene(tmp_path: Path) -> Iterator[tuple[ObserverProcess, Consumer, Path]]:
    spec = tmp_path / "items.yaml"
    spec.write_text(SPEC)
    with EmbeddedBroker(port=free_port(), log=tmp_path / "tansu.log") as broker:
        kafka = KafkaSettings(bootstrap=broker.bootstrap)
        observer = ObserverProcess(
            kafka,
            f"sqlite:///{tmp_path / 'observer.sqlite3'}",
            tmp_path,
            env={"CHOREO_OBSERVER_SPECS": str(spec)},
        ).start()
        consumer = Consumer(kafka)
        consumer.start()
        try:
            yield observer, consumer, tmp_path
        finally:
            consumer.stop()
            assert observer.stop() == 0, observer.tail()


def test_a_dead_letter_is_replayed_from_its_flow_page(
    browser: Browser, scene: tuple[ObserverProcess, Consumer, Path]
) -> None:
    observer, consumer, data_dir = scene

    def dead_letter_seen() -> bool:
        letters = observer.try_get("/api/dead-letters")
        return bool(letters and letters["total"] == 1)

    wait_until(dead_letter_seen, timeout=60, what="the dead letter in the observer")
    assert consumer.flow is not None
    consumer.upgraded = True  # the fix is deployed; the operator replays from the UI
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors = watch_errors(page)
    page.goto(f"{observer.url}/#/flow/{consumer.flow}")
    tab = page.get_by_role("tab", name="Dead letters (1) & lifecycle")
    tab.click()
    page.get_by_test_id("replay").click()
    # Without a token the API answers 401 and the UI asks for one.
    token = (data_dir / DEV_TOKEN_FILE).read_text().strip()
    page.locator("#token-input").fill(token)
    page.locator("#token-form button").click()
    page.get_by_role("tab", name="Dead letters (1) & lifecycle").click()
    page.get_by_test_id("replay").click()
    expect(page.get_by_test_id("replay")).to_have_text(
        f"Replayed to {consumer.service.name}", timeout=30_000
    )

    def resolved() -> bool:
        flow = observer.try_get(f"/api/flows/{consumer.flow}")
        return bool(flow and flow["status"] == "completed" and flow["dead_letters"] == 0)

    wait_until(resolved, timeout=60, what="the flow completed")
    page.reload()
    page.get_by_role("tab", name="Dead letters (1) & lifecycle").click()
    expect(page.get_by_test_id("dead-letter-status")).to_contain_text("resolved", timeout=30_000)
    assert [e for e in errors if "401" not in e] == []
