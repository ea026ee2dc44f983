"""Stuck flows on the real broker: flows held at a step by a consumer held back are found by
"waiting at step X for more than N seconds"; the step's deadline makes the observer publish
``saga.step_overdue`` exactly once per flow and step (also across a restart), which a
reacting service receives; failure patterns group the stalled flows by last step and error."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

from choreokit.events import HandlerContext, KafkaSettings, PermanentError, Service
from choreokit.services.example.contracts.inventory import StockReserved
from choreokit.services.example.contracts.orders import OrderPlaced
from choreokit.services.example.contracts.payments import PaymentAuthorized
from choreokit.services.example.contracts.saga import ORDER_SAGA
from choreokit.services.saga_observer import SagaCatalog
from choreokit.services.saga_observer.events import SagaStepOverdue
from choreokit.services.saga_observer.waits import overdue_id
from tests import observer_fixtures
from tests.integration.kafka_io import end_offsets, headers_of, read_topic
from tests.integration.test_observer_ingest import an_order, stand_in_inventory
from tests.observer_fixtures import RunningObserver, running_observer

private_broker = observer_fixtures.private_broker
private_kafka = observer_fixtures.private_kafka

STEP = "stock.reserved"
SPECS = SagaCatalog(
    [
        ORDER_SAGA.model_copy(
            update={"deadlines": {STEP: timedelta(seconds=1)}, "timeout": timedelta(seconds=4)}
        )
    ]
)
"""The order saga with a payment decision due 1 s after the reservation, and a 4 s timeout."""


async def overdue_on_the_topic(kafka: KafkaSettings) -> Counter[tuple[str, str]]:
    """Every ``saga.step_overdue`` published so far, by (flow, ce_id)."""
    total = sum((await end_offsets(kafka.bootstrap, "sagas")).values())
    found: Counter[tuple[str, str]] = Counter()
    for r in await read_topic(kafka.bootstrap, "sagas", total):
        headers = headers_of(r)
        if headers["ce_type"] == "saga.step_overdue":
            found[(headers["ce_correlationid"], headers["ce_id"])] += 1
    return found


async def listed(observer: RunningObserver, **params: Any) -> set[str]:
    page = await observer.get("/api/flows", saga="order", limit=50, **params)
    return {item["correlation_id"] for item in page["items"]}


async def test_held_flows_are_found_announced_once_and_grouped(
    private_kafka: KafkaSettings, tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path / 'observer.sqlite3'}"
    released = asyncio.Event()
    orders = Service("orders", settings=private_kafka, publishes=[OrderPlaced])
    payments = Service("payments", settings=private_kafka, publishes=[PaymentAuthorized])
    escalations = Service("escalations", settings=private_kafka)
    received: list[tuple[str, SagaStepOverdue]] = []

    @payments.handler(StockReserved)
    async def pay(event: StockReserved, ctx: HandlerContext) -> None:
        if event.order_id == "o-bad":
            raise PermanentError(f"no payment provider for {event.order_id}")
        await released.wait()  # the consumer is held back until the test lets it go
        await ctx.publish(
            PaymentAuthorized(
                order_id=event.order_id, payment_id=f"p-{event.order_id}", amount_cents=1
            )
        )

    @escalations.handler(SagaStepOverdue)
    async def escalate(event: SagaStepOverdue, ctx: HandlerContext) -> None:
        received.append((ctx.correlation_id, event))

    overrides: dict[str, Any] = {"sagas": SPECS, "sweep_interval": timedelta(milliseconds=200)}
    async with (
        running_observer(private_kafka, db, tmp_path, **overrides) as observer,
        stand_in_inventory(private_kafka),
        escalations,
        orders,
    ):
        async with payments:
            flows = {}
            for order_id in ("o-bad", "o-1", "o-2", "o-3"):
                flows[order_id] = (await orders.publish(an_order(order_id))).correlation_id
            held = {flows[o] for o in ("o-1", "o-2", "o-3")}
            await observer.wait(
                "four flows waiting at stock.reserved",
                lambda page: page["total"] == 4,
                path=f"/api/flows?waiting_at={STEP}",
            )
            assert not await listed(observer, waiting_at=STEP, waited_more_than="1h")
            assert not await listed(observer, waiting_at="order.placed")
            await observer.wait(
                "them waiting for more than a second",
                lambda page: page["total"] == 4,
                path=f"/api/flows?waiting_at={STEP}&waited_more_than=1s",
            )
            bad = await observer.wait(
                "the dead letter of o-bad",
                lambda page: page["total"] == 1,
                path="/api/flows?dead_letter_error=PermanentError&dead_letter_type=stock.reserved",
            )
            assert bad["items"][0]["correlation_id"] == flows["o-bad"]
            drawn = await observer.wait(
                "the map to show them overdue",
                lambda m: next(n for n in m["nodes"] if n["id"] == STEP)["waiting"]["overdue"] == 4,
                path="/api/sagas/order/map",
            )
            assert drawn["flows"] == 4
            for _ in range(200):  # the reacting service gets each flow's overdue step
                if len({cid for cid, _ in received}) == 4:
                    break
                await asyncio.sleep(0.05)  # noqa: sleep-ok - polls what the handler received
            assert {cid for cid, _ in received} == set(flows.values())
            detail = await observer.get(f"/api/flows/{flows['o-1']}")
            reservation = next(e for e in detail["events"] if e["type"] == STEP)
            event = next(e for cid, e in received if cid == flows["o-1"])
            assert (event.step, event.waiting_event_id) == (STEP, reservation["id"])
            assert event.waiting_event_type == STEP
            assert event.deadline - event.waiting_since == timedelta(seconds=1)
            assert event.expected == (
                "payment.authorized",
                "payment.declined",
                "approval.requested",
            )

            released.set()  # payments goes on: the held flows move to payment.authorized
            await observer.wait(
                "the held flows to move on",
                lambda page: {i["correlation_id"] for i in page["items"]} == held,
                path="/api/flows?waiting_at=payment.authorized",
            )
            assert await listed(observer, waiting_at=STEP) == {flows["o-bad"]}
        # payments is gone now: a new flow waits at stock.reserved
        late = (await orders.publish(an_order("o-late"))).correlation_id
        await observer.wait(
            "o-late waiting", lambda page: page["total"] == 1, path=f"/api/flows?q={late}"
        )

    # a restarted observer on the same database announces o-late once, and nothing again
    async with running_observer(private_kafka, db, tmp_path, **overrides) as observer:
        for _ in range(400):
            announced = await overdue_on_the_topic(private_kafka)
            if any(cid == late for cid, _ in announced):
                break
            await asyncio.sleep(0.05)  # noqa: sleep-ok - polls the topic for o-late's event
        patterns = await observer.wait(
            "the flows stalled, grouped",
            lambda p: p["total"] == 5,
            path="/api/sagas/order/failure-patterns",
        )
    everyone = {*flows.values(), late}
    assert announced == {(cid, overdue_id(cid, STEP)): 1 for cid in everyone}
    groups = {(p["last_step"], p["error_type"]): p for p in patterns["patterns"]}
    assert {key: p["count"] for key, p in groups.items()} == {
        ("payment.authorized", None): 3,
        (STEP, None): 1,
        (STEP, "PermanentError"): 1,
    }
    assert groups[(STEP, "PermanentError")]["example"] == flows["o-bad"]
    assert groups[("payment.authorized", None)]["by_status"] == {"stalled": 3}
