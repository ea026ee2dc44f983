"""The observer on the real broker: order of delivery and duplicates change nothing; stalled
flows are reported with their expected step and announced; every record gets an answer."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import socket
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from choreokit.events import (
    ConfigurationError,
    HandlerContext,
    KafkaSettings,
    PermanentError,
    Service,
)
from choreokit.events._kafka import ensure_topics
from choreokit.services.example.contracts.inventory import ReservedLine, StockReserved
from choreokit.services.example.contracts.orders import Address, OrderLine, OrderPlaced
from choreokit.services.runtime import EmbeddedBroker, free_port
from choreokit.services.runtime.app import Runtime
from choreokit.services.saga_observer.app import ObserverApp
from choreokit.services.saga_observer.lifecycle import lifecycle_id
from choreokit.services.saga_observer.settings import ObserverSettings
from tests import observer_fixtures
from tests.integration.kafka_io import headers_of, produce_raw, read_topic
from tests.observer_fixtures import running_observer, snapshot
from tests.order_flows import Flow, mix, publish, steps_of

private_broker = observer_fixtures.private_broker
private_kafka = observer_fixtures.private_kafka


@contextlib.contextmanager
def another_broker(tmp_path: Path) -> Iterator[KafkaSettings]:
    embedded = EmbeddedBroker(port=free_port(), log=tmp_path / "other-tansu.log")
    embedded.start()
    try:
        yield KafkaSettings(bootstrap=embedded.bootstrap)
    finally:
        embedded.stop()


def semantic(snap: dict[str, Any]) -> dict[str, Any]:
    """What was seen and judged, without where the records sat in the log."""
    placement = {"topic", "kafka_partition", "kafka_offset"}
    return {
        "events": [{k: v for k, v in e.items() if k not in placement} for e in snap["events"]],
        "flows": snap["flows"],
        "lifecycle": snap["lifecycle"],
    }


async def judged(kafka: KafkaSettings, db: str, tmp_path: Path, flows: list[Flow]) -> Any:
    """Run an observer until every flow is judged final; return its /api/counts."""
    async with running_observer(kafka, db, tmp_path) as observer:
        counts = await observer.wait(
            f"{len(flows)} flows judged",
            lambda c: c["total"] == len(flows) and c["by_status"]["running"] == 0,
        )
        await observer.wait(
            "every lifecycle event sent and read back",
            lambda s: s["lifecycle_pending"] == 0 and s["lifecycle_sent"] == len(flows),
            path="/api/stats",
        )
        return counts


async def test_shuffled_delivery_gives_the_same_state_as_in_order_delivery(
    private_kafka: KafkaSettings, tmp_path: Path
) -> None:
    flows = mix(60, seed=11)
    steps = steps_of(flows)
    await publish(private_kafka, steps)
    in_order_db = f"sqlite:///{tmp_path / 'in-order.sqlite3'}"
    counts = await judged(private_kafka, in_order_db, tmp_path, flows)
    expected: dict[str, int] = {}
    for flow in flows:
        expected[flow.expected_status] = expected.get(flow.expected_status, 0) + 1
    assert {k: v for k, v in counts["by_status"].items() if v} == expected

    shuffled = list(steps)
    random.Random(5).shuffle(shuffled)
    with another_broker(tmp_path) as other:
        await publish(other, shuffled, window=7)
        shuffled_db = f"sqlite:///{tmp_path / 'shuffled.sqlite3'}"
        await judged(other, shuffled_db, tmp_path, flows)

    in_order, reordered = await snapshot(in_order_db), await snapshot(shuffled_db)
    assert len(in_order["events"]) == len(steps)
    assert semantic(reordered) == semantic(in_order)
    status = {f["correlation_id"]: f["status"] for f in in_order["flows"]}
    assert status == {f.correlation_id: f.expected_status for f in flows}
    # one lifecycle event per flow, of the type its final status calls for, either way
    assert sorted(t for _, _, t in in_order["lifecycle"]) == sorted(
        {"completed": "saga.completed", "failed": "saga.failed"}.get(
            f.expected_status, "saga.compensated"
        )
        for f in flows
    )


async def test_every_event_published_twice_gives_the_same_state_and_counts(
    private_kafka: KafkaSettings, tmp_path: Path
) -> None:
    flows = mix(40, seed=12)
    steps = steps_of(flows)
    await publish(private_kafka, steps)
    once_db = f"sqlite:///{tmp_path / 'once.sqlite3'}"
    once_counts = await judged(private_kafka, once_db, tmp_path, flows)

    with another_broker(tmp_path) as other:
        repeated = steps + random.Random(3).sample(steps, len(steps))
        await publish(other, repeated)
        twice_db = f"sqlite:///{tmp_path / 'twice.sqlite3'}"
        async with running_observer(other, twice_db, tmp_path) as observer:
            twice_counts = await observer.wait(
                "every copy read",
                lambda c: c["total"] == len(flows) and c["by_status"]["running"] == 0,
            )
            stats = await observer.wait(
                "both copies of every event counted",
                lambda s: s["duplicates"] == len(steps) and s["lifecycle_pending"] == 0,
                path="/api/stats",
            )
    assert twice_counts == once_counts
    assert stats["events"] == len(steps)
    once, twice = await snapshot(once_db), await snapshot(twice_db)
    assert [e["deliveries"] for e in twice["events"]] == [2] * len(steps)
    for snap in (once, twice):
        for e in snap["events"]:
            for key in ("deliveries", "topic", "kafka_partition", "kafka_offset"):
                e.pop(key)
        for f in snap["flows"]:
            f.pop("duplicates")
    assert semantic(twice) == semantic(once)


@contextlib.asynccontextmanager
async def stand_in_inventory(kafka: KafkaSettings) -> AsyncIterator[Service]:
    """An inventory service on the real event layer: it reserves stock for every order."""
    inventory = Service("inventory", settings=kafka, publishes=[StockReserved])

    @inventory.handler(OrderPlaced)
    async def reserve(event: OrderPlaced, ctx: HandlerContext) -> None:
        await ctx.publish(
            StockReserved(
                order_id=event.order_id,
                reservation_id=f"r-{event.order_id}",
                lines=tuple(
                    ReservedLine(sku=line.sku, quantity=line.quantity) for line in event.lines
                ),
                amount_cents=event.total_cents,
            )
        )

    async with inventory:
        yield inventory


def an_order(order_id: str) -> OrderPlaced:
    return OrderPlaced(
        order_id=order_id,
        customer_id="c-1",
        lines=(OrderLine(sku="SKU-1", quantity=1, unit_price_cents=990),),
        ship_to=Address(country="DE", postal_code="10115"),
    )


async def test_a_flow_whose_service_is_stopped_stalls_and_saga_stalled_is_published(
    private_kafka: KafkaSettings, tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path / 'observer.sqlite3'}"
    orders = Service("orders", settings=private_kafka, publishes=[OrderPlaced])
    async with (
        running_observer(private_kafka, db, tmp_path, timeout=timedelta(seconds=2)) as observer,
        stand_in_inventory(private_kafka),
        orders,
    ):
        # payments is not running: nothing reacts to stock.reserved
        placed = await orders.publish(an_order("o-stalled"))
        flow = placed.correlation_id
        running = await observer.wait(
            "the reservation to be seen",
            lambda f: f["event_count"] == 2,
            path=f"/api/flows/{flow}",
        )
        assert running["status"] == "running"
        stalled = await observer.wait(
            "the flow to stall", lambda f: f["status"] == "stalled", path=f"/api/flows/{flow}"
        )
    (step,) = stalled["expected"]
    assert step["reason"] == "next-step"
    assert step["one_of"] == ["payment.authorized", "payment.declined", "approval.requested"]
    assert step["after_type"] == "stock.reserved"
    assert [lc["type"] for lc in stalled["lifecycle"]] == ["saga.stalled"]

    (record,) = [
        r
        for r in await read_topic(private_kafka.bootstrap, "sagas", 1)
        if headers_of(r)["ce_correlationid"] == flow
    ]
    headers = headers_of(record)
    assert headers["ce_type"] == "saga.stalled"
    assert headers["ce_id"] == lifecycle_id(flow, "saga.stalled")  # the same id on any repeat
    assert headers["ce_source"] == "/services/saga-observer"
    assert headers["ce_causationid"] == stalled["events"][-1]["id"]
    payload = json.loads(record.value or b"")
    assert payload["saga"] == "order"
    assert payload["expected"][0]["one_of"] == [
        "payment.authorized",
        "payment.declined",
        "approval.requested",
    ]


async def test_dead_letters_junk_and_new_topics_are_all_shown(
    private_kafka: KafkaSettings, tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path / 'observer.sqlite3'}"
    payments = Service("payments", settings=private_kafka)
    orders = Service("orders", settings=private_kafka, publishes=[OrderPlaced])

    @payments.handler(StockReserved)
    async def refuse(event: StockReserved) -> None:
        raise PermanentError(f"no payment provider for {event.order_id}")

    async with (
        running_observer(private_kafka, db, tmp_path) as observer,
        stand_in_inventory(private_kafka),
        payments,
        orders,
    ):
        flow = (await orders.publish(an_order("o-dead"))).correlation_id
        detail = await observer.wait(
            "the dead letter to be attached to its flow",
            lambda f: f["dead_letters"] == 1,
            path=f"/api/flows/{flow}",
        )
        (letter,) = detail["dead_letter_records"]
        assert letter["event_type"] == "stock.reserved"
        assert letter["group"] == "payments"
        assert letter["error_type"] == "PermanentError"
        assert "no payment provider for o-dead" in letter["error_message"]

        await produce_raw(private_kafka.bootstrap, "inventory", [(b"k", b"\x00\x01", [])])
        rejects = await observer.wait(
            "the junk record to be counted", lambda r: r["total"] == 1, path="/api/rejects"
        )
        assert rejects["items"][0]["topic"] == "inventory"
        assert rejects["items"][0]["error_type"] == "InvalidEnvelopeError"

        # a topic created after the observer started is read too (pattern subscription)
        await ensure_topics(private_kafka, ["billing"])
        await produce_raw(
            private_kafka.bootstrap,
            "billing",
            [
                (
                    b"inv-1",
                    b'{"amount": 1}',
                    [
                        ("ce_specversion", b"1.0"),
                        ("ce_id", b"inv-1"),
                        ("ce_source", b"urn:billing"),
                        ("ce_type", b"invoice.sent"),
                    ],
                )
            ],
        )
        untracked = await observer.wait(
            "the new topic's event",
            lambda f: f["total"] == 1,
            path="/api/flows?status=untracked",
        )
        assert untracked["items"][0]["correlation_id"] == "inv-1"
        stats = await observer.get("/api/stats")
        assert {p["topic"] for p in stats["positions"]} >= {
            "billing",
            "inventory",
            "orders",
            "inventory.dlq",
        }


async def test_a_log_recreated_under_a_kept_database_is_read_again(
    private_kafka: KafkaSettings, tmp_path: Path
) -> None:
    """The embedded broker loses everything on restart; the observer's database does not."""
    db = f"sqlite:///{tmp_path / 'observer.sqlite3'}"
    before = mix(30, seed=51)
    await publish(private_kafka, steps_of(before))
    async with running_observer(private_kafka, db, tmp_path) as observer:
        await observer.wait("the first flows", lambda c: c["total"] == 30)
    with another_broker(tmp_path) as restarted:
        after = mix(8, seed=52)
        await publish(restarted, steps_of(after))
        async with running_observer(restarted, db, tmp_path) as observer:
            counts = await observer.wait(
                "the new broker's flows",
                lambda c: c["total"] == 38 and not c["by_status"]["running"],
            )
            stats = await observer.get("/api/stats")
    assert counts["total"] == 38
    assert stats["duplicates"] == 0


async def test_a_port_in_use_is_refused_with_what_to_do(
    private_kafka: KafkaSettings, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = ObserverSettings(db=f"sqlite:///{tmp_path / 'o.sqlite3'}", port=port)
        app = ObserverApp(Runtime(name="saga-observer", kafka=private_kafka), settings)
        with pytest.raises(ConfigurationError, match="CHOREO_OBSERVER_PORT"):
            await app.run(asyncio.Event())
