"""The saga map, stuck-flow search, failure patterns and step deadlines, on the store (SQLite).

The figures are checked against counts taken from the synthetic flows themselves;
``saga.step_overdue`` is recorded once per flow and step, also across a restart.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka import ConsumerRecord
from sqlalchemy import select

from choreokit.services.example.contracts.saga import ORDER_SAGA
from choreokit.services.saga_observer import SagaCatalog, Status
from choreokit.services.saga_observer.queries import FlowFilter, Queries
from choreokit.services.saga_observer.records import micros
from choreokit.services.saga_observer.saga_map import SagaMaps, latency, spec_graph
from choreokit.services.saga_observer.schema import lifecycle
from choreokit.services.saga_observer.store import Store, open_engines
from choreokit.services.saga_observer.waits import overdue_id
from tests.order_flows import Flow, Outcome, as_records, mix, steps_of
from tests.support import record
from tests.unit.test_saga_store import Fed

DEADLINE = timedelta(seconds=30)
SPEC = ORDER_SAGA
"""The example's order saga: a payment decision is due 30 s after the reservation."""
CATALOG = SagaCatalog([SPEC])
START = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
WITHIN = START + timedelta(seconds=5)
"""Before the step deadline and the saga's timeout."""


@asynccontextmanager
async def opened(path: Path) -> AsyncIterator[tuple[Store, Queries, SagaMaps]]:
    writer, reader = open_engines(f"sqlite:///{path}")
    store = Store(writer, CATALOG, group="observer")
    await store.migrate()
    try:
        yield store, Queries(reader, CATALOG, group="observer", jaeger_url="-"), SagaMaps(reader)
    finally:
        await writer.dispose()
        await reader.dispose()


def flows_of(count: int) -> list[Flow]:
    return mix(count, outcomes=list(Outcome), seed=5, start=START)


def transitions(flows: list[Flow]) -> Counter[tuple[str, str]]:
    """(cause type, effect type) -> flows that have it, from the flows themselves."""
    found: Counter[tuple[str, str]] = Counter()
    for flow in flows:
        types = {s.event_id: type(s.event).event_info().type for s in flow.steps}
        found.update(
            {(types[s.causation_id], types[s.event_id]) for s in flow.steps if s.causation_id}
        )
    return found


def test_the_example_gives_the_payment_decision_a_deadline() -> None:
    assert ORDER_SAGA.deadlines == {"stock.reserved": DEADLINE}


def test_the_spec_graph_has_its_steps_ends_and_compensations() -> None:
    graph = spec_graph(ORDER_SAGA)
    kinds = {n.type: n.kind for n in graph.nodes}
    assert kinds["order.placed"] == "start"
    assert kinds["order.confirmed"] == "success"
    assert kinds["order.cancelled"] == "failure"
    assert kinds["stock.released"] == kinds["payment.refunded"] == "compensation"
    assert kinds["stock.reserved"] == "step"
    assert {n.type for n in graph.nodes} == ORDER_SAGA.types
    edges = {(e.source, e.target): e.kind for e in graph.edges}
    assert edges[("stock.reserved", "payment.authorized")] == "step"
    assert edges[("order.cancelled", "stock.released")] == "compensation"
    assert len(edges) == sum(len(v) for v in ORDER_SAGA.steps.values()) + 2
    depth = {n.type: n.depth for n in graph.nodes}
    assert depth["order.placed"] == 0
    assert depth["stock.reserved"] == 1
    assert depth["payment.authorized"] == 2


def test_latency_takes_nearest_rank_percentiles() -> None:
    found = latency([float(v) for v in range(1, 101)])
    assert found is not None
    assert (found.p50, found.p95, found.max, found.samples) == (50.0, 95.0, 100.0, 100)
    assert latency([]) is None


async def test_the_map_counts_what_the_flows_did(tmp_path: Path) -> None:
    flows = flows_of(36)
    async with opened(tmp_path / "db.sqlite3") as (store, _queries, maps):
        await Fed(store).feed(as_records(steps_of(flows)), batch=13, now=WITHIN)
        found = await maps.saga_map(SPEC, since_us=None, until_us=None, now_us=micros(WITHIN))
    assert found.flows == 36
    passed = {n.id: n.passed for n in found.nodes}
    for event_type in SPEC.types:
        assert passed[event_type] == sum(
            any(type(s.event).event_info().type == event_type for s in f.steps) for f in flows
        ), event_type
    expected = transitions(flows)
    edges = {(e.source, e.target): e for e in found.edges}
    for pair, count in expected.items():
        assert edges[pair].count == count, pair
        assert edges[pair].kind in {"step", "compensation"}, pair
    authorized = edges[("stock.reserved", "payment.authorized")]
    assert authorized.latency_ms is not None
    assert authorized.latency_ms.samples == expected[("stock.reserved", "payment.authorized")]
    assert authorized.flows_url == (
        "/api/flows?saga=order&cause_type=stock.reserved&event_type=payment.authorized"
    )
    # flows that stop at payment wait at stock.reserved; none is overdue or stalled yet
    stops = sum(f.outcome is Outcome.STOPS_AT_PAYMENT for f in flows)
    reserved = next(n for n in found.nodes if n.id == "stock.reserved")
    assert (reserved.waiting.running, reserved.waiting.stalled, reserved.waiting.overdue) == (
        stops,
        0,
        0,
    )
    assert reserved.deadline_seconds == DEADLINE.total_seconds()
    assert sum(n.waiting.running for n in found.nodes) == stops


async def test_the_window_counts_the_flows_started_in_it(tmp_path: Path) -> None:
    early, late = flows_of(6), mix(4, seed=9, start=START + timedelta(minutes=10))
    async with opened(tmp_path / "db.sqlite3") as (store, _queries, maps):
        await Fed(store).feed(as_records(steps_of([*early, *late])), batch=50, now=WITHIN)
        since = micros(START + timedelta(minutes=5))
        found = await maps.saga_map(SPEC, since_us=since, until_us=None, now_us=micros(WITHIN))
    assert found.flows == 4
    assert next(n for n in found.nodes if n.id == "order.placed").passed == 4
    assert all(e.count <= 4 for e in found.edges)


async def test_flows_are_found_by_the_step_they_wait_at_and_for_how_long(tmp_path: Path) -> None:
    flows = flows_of(24)
    stops = {f.correlation_id for f in flows if f.outcome is Outcome.STOPS_AT_PAYMENT}
    async with opened(tmp_path / "db.sqlite3") as (store, queries, _maps):
        await Fed(store).feed(as_records(steps_of(flows)), batch=7, now=WITHIN)

        async def found(**where: Any) -> set[str]:
            page, total = await queries.flows(FlowFilter(**where), limit=100, offset=0)
            assert total == len(page)
            return {f.correlation_id for f in page}

        assert await found(waiting_at="stock.reserved") == stops
        # each waits since its stock.reserved, a few milliseconds after START
        assert (
            await found(
                waiting_at="stock.reserved", waiting_since_us=micros(START + timedelta(seconds=1))
            )
            == stops
        )
        assert not await found(waiting_at="stock.reserved", waiting_since_us=micros(START))
        assert not await found(waiting_at="order.placed")
        assert await found(waiting_since_us=micros(WITHIN)) == stops


async def test_step_overdue_is_recorded_once_per_flow_and_step_across_restarts(
    tmp_path: Path,
) -> None:
    flows = flows_of(12)
    stops = {f.correlation_id for f in flows if f.outcome is Outcome.STOPS_AT_PAYMENT}
    reserved = {
        f.correlation_id: f.steps[1] for f in flows if f.outcome is Outcome.STOPS_AT_PAYMENT
    }
    db = tmp_path / "db.sqlite3"
    async with opened(db) as (store, _queries, maps):
        await Fed(store).feed(as_records(steps_of(flows)), batch=5, now=WITHIN)
        assert await store.sweep_steps(micros(WITHIN)) == []
        late = START + DEADLINE + timedelta(seconds=1)
        recorded = await store.sweep_steps(micros(late))
        assert {t.correlation_id for t in recorded} == stops
        for change in recorded:
            assert change.type == "saga.step_overdue"
            assert change.id == overdue_id(change.correlation_id, "stock.reserved")
            assert change.caused_by == reserved[change.correlation_id].event_id
        assert await store.sweep_steps(micros(late)) == []
        overdue = await maps.saga_map(SPEC, since_us=None, until_us=None, now_us=micros(late))
        node = next(n for n in overdue.nodes if n.id == "stock.reserved")
        assert node.waiting.overdue == len(stops)
    async with opened(db) as (store, _queries, _maps):  # a restarted observer on the same database
        assert await store.sweep_steps(micros(late + timedelta(minutes=1))) == []
        # the flow is judged again (stalled by the sweep): its wait, and its mark, stay
        await store.sweep(micros(START + timedelta(minutes=5)))
        assert await store.sweep_steps(micros(START + timedelta(minutes=6))) == []
        async with store._engine.connect() as conn:
            rows = (await conn.execute(select(lifecycle.c.id, lifecycle.c.type))).all()
    overdue_rows = [r for r in rows if r.type == "saga.step_overdue"]
    assert sorted(r.id for r in overdue_rows) == sorted(
        overdue_id(cid, "stock.reserved") for cid in stops
    )


async def test_a_flow_that_moves_on_in_time_is_never_overdue(tmp_path: Path) -> None:
    flows = [f for f in flows_of(6) if f.outcome is Outcome.HAPPY]
    async with opened(tmp_path / "db.sqlite3") as (store, queries, _maps):
        await Fed(store).feed(as_records(steps_of(flows)), batch=1, now=WITHIN)
        assert await store.sweep_steps(micros(START + timedelta(hours=1))) == []
        waiting = FlowFilter(waiting_since_us=micros(WITHIN))
        _, total = await queries.flows(waiting, limit=10, offset=0)
        assert total == 0


async def test_waits_are_the_same_for_any_order_of_arrival(tmp_path: Path) -> None:
    flows = flows_of(18)
    steps = steps_of(flows)
    shuffled = list(steps)
    random.Random(3).shuffle(shuffled)
    snapshots = []
    for name, order, batch in (("in-order", steps, 50), ("shuffled", shuffled, 4)):
        async with opened(tmp_path / f"{name}.sqlite3") as (store, queries, _maps):
            await Fed(store).feed(as_records(order), batch=batch, now=WITHIN)
            snapshots.append((await queries.snapshot())["waits"])
    assert snapshots[0] == snapshots[1]
    assert len(snapshots[0]) == sum(f.outcome is Outcome.STOPS_AT_PAYMENT for f in flows)


def dead_letter(original: ConsumerRecord[bytes, bytes], error: str, message: str, n: int) -> Any:
    return record(
        f"{original.topic}.dlq",
        value=original.value,
        offset=n,
        headers=[
            *original.headers,
            ("choreo_dlq_error_type", error.encode()),
            ("choreo_dlq_error_message", message.encode()),
            ("choreo_dlq_original_topic", original.topic.encode()),
            ("choreo_dlq_original_partition", str(original.partition).encode()),
            ("choreo_dlq_original_offset", str(original.offset).encode()),
            ("choreo_dlq_consumer_group", b"payments"),
            ("choreo_dlq_attempts", b"3"),
        ],
    )


async def test_failure_patterns_group_by_last_step_and_fingerprint(tmp_path: Path) -> None:
    flows = mix(
        30,
        outcomes=[Outcome.STOPS_AT_PAYMENT, Outcome.OUT_OF_STOCK, Outcome.HAPPY],
        start=START,
        seed=2,
    )
    stopped = [f for f in flows if f.outcome is Outcome.STOPS_AT_PAYMENT]
    records = as_records(steps_of(flows))
    by_id = {s.event_id: r for s, r in zip(steps_of(flows), records, strict=True)}
    # payments gave up on the reservation of 6 of the 10 stopped flows: 4 with one error
    # (messages that differ only by an order id are one group), 2 with another
    letters = [
        dead_letter(
            by_id[f.steps[1].event_id], "ProviderDown", f"no provider for {f.correlation_id}", i
        )
        for i, f in enumerate(stopped[:4])
    ] + [
        dead_letter(by_id[f.steps[1].event_id], "CardExpired", "card expired", 10 + i)
        for i, f in enumerate(stopped[4:6])
    ]
    async with opened(tmp_path / "db.sqlite3") as (store, queries, maps):
        await Fed(store).feed([*records, *letters], batch=20, now=WITHIN)
        await store.sweep(micros(START + timedelta(minutes=5)))  # past the timeout: stalled
        found = await maps.failure_patterns(SPEC)
        groups = {(p.last_step, p.error_type): p for p in found.patterns}
        assert {k: p.count for k, p in groups.items()} == {
            ("stock.reserved", "ProviderDown"): 4,
            ("stock.reserved", "CardExpired"): 2,
            ("stock.reserved", None): 4,
            ("order.cancelled", None): 10,
        }
        assert groups[("stock.reserved", "ProviderDown")].by_status == {"stalled": 4}
        assert groups[("order.cancelled", None)].by_status == {"failed": 10}
        assert found.total == 20
        assert [p.count for p in found.patterns] == [10, 4, 4, 2]
        # a pattern's flows, and the dead-letter search, list the same flows
        provider = groups[("stock.reserved", "ProviderDown")]
        assert provider.fingerprint is not None
        assert "dead_letter_fingerprint=" in provider.flows_url
        page, total = await queries.flows(
            FlowFilter(statuses=(Status.STALLED,), dead_letter_fingerprint=provider.fingerprint),
            limit=50,
            offset=0,
        )
        assert total == 4
        assert {f.correlation_id for f in page} == {f.correlation_id for f in stopped[:4]}
        _, by_error = await queries.flows(
            FlowFilter(dead_letter_error="CardExpired"), limit=50, offset=0
        )
        _, by_type = await queries.flows(
            FlowFilter(dead_letter_type="stock.reserved"), limit=50, offset=0
        )
        assert (by_error, by_type) == (2, 6)
        stalled_only = await maps.failure_patterns(SPEC, statuses=(Status.STALLED,))
        assert stalled_only.total == 10
