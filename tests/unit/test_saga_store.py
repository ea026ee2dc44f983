"""The store on SQLite: one transaction per batch, dedup by ce_id, fencing, sweeps, the outbox."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import update

from choreokit.events import ConfigurationError
from choreokit.services.example.contracts.saga import ORDER_SAGA
from choreokit.services.saga_observer import SagaCatalog
from choreokit.services.saga_observer.events import LIFECYCLE_TYPES
from choreokit.services.saga_observer.queries import FlowFilter, Queries
from choreokit.services.saga_observer.records import classify, micros
from choreokit.services.saga_observer.schema import LATEST, schema_version
from choreokit.services.saga_observer.store import Advance, FencedError, Store, open_engines
from tests.order_flows import COMPLETE, Outcome, as_records, mix, steps_of

CATALOG = SagaCatalog([ORDER_SAGA])
NOW = datetime.now(UTC)


class Fed:
    """Feeds records to a store in batches, as the consumer does, tracking offsets."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.expected: dict[TopicPartition, int | None] = defaultdict(lambda: None)

    async def feed(
        self, records: Sequence[ConsumerRecord[bytes, bytes]], *, batch: int, now: datetime = NOW
    ) -> int:
        transitions = 0
        for start in range(0, len(records), batch):
            chunk = records[start : start + batch]
            advance: dict[TopicPartition, Advance] = {}
            for r in chunk:
                tp = TopicPartition(r.topic, r.partition)
                before = advance[tp].expected if tp in advance else self.expected[tp]
                advance[tp] = Advance(before, r.offset + 1)
            seen = [
                classify(r, lifecycle_types=LIFECYCLE_TYPES, payload_limit=16_384) for r in chunk
            ]
            applied = await self.store.apply(seen, advance, micros(now))
            transitions += len(applied.transitions)
            for tp, step in advance.items():
                self.expected[tp] = step.next
        return transitions


@asynccontextmanager
async def opened(path: Path) -> AsyncIterator[tuple[Store, Queries]]:
    writer, reader = open_engines(f"sqlite:///{path}")
    store = Store(writer, CATALOG, group="observer")
    await store.migrate()
    try:
        yield store, Queries(reader, CATALOG, group="observer", jaeger_url="http://jaeger:16686")
    finally:
        await writer.dispose()
        await reader.dispose()


def semantic(snapshot: dict[str, Any]) -> dict[str, Any]:
    """The snapshot without where records sat in Kafka (another publication order moves them)."""
    placement = {"topic", "kafka_partition", "kafka_offset"}
    return {
        "events": [{k: v for k, v in e.items() if k not in placement} for e in snapshot["events"]],
        "flows": snapshot["flows"],
        "lifecycle": snapshot["lifecycle"],
    }


async def test_flows_are_recorded_and_judged(tmp_path: Path) -> None:
    flows = mix(8, outcomes=list(Outcome), start=NOW)
    async with opened(tmp_path / "db.sqlite3") as (store, queries):
        transitions = await Fed(store).feed(as_records(steps_of(flows)), batch=5)
        counts = await queries.counts()
        assert counts.total == 8
        expected_running = sum(f.outcome not in COMPLETE for f in flows)
        assert counts.by_status["running"] == expected_running
        assert transitions == 8 - expected_running
        page, total = await queries.flows(FlowFilter(), limit=100, offset=0)
        assert total == 8
        by_id = {f.correlation_id: f for f in flows}
        for summary in page:
            flow = by_id[summary.correlation_id]
            if flow.outcome in COMPLETE:
                assert summary.status == flow.expected_status
            assert summary.connected
            assert summary.event_count == len(flow.steps)


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(0, 1000), batch=st.integers(1, 40))
async def test_shuffled_delivery_in_any_batches_gives_the_in_order_state(
    tmp_path: Path, seed: int, batch: int
) -> None:
    flows = mix(12, outcomes=list(Outcome), seed=3, start=NOW)
    steps = steps_of(flows)
    shuffled = list(steps)
    random.Random(seed).shuffle(shuffled)
    async with opened(tmp_path / f"in-order-{seed}-{batch}.sqlite3") as (store, queries):
        await Fed(store).feed(as_records(steps), batch=50)
        expected = semantic(await queries.snapshot())
    async with opened(tmp_path / f"shuffled-{seed}-{batch}.sqlite3") as (store, queries):
        await Fed(store).feed(as_records(shuffled), batch=batch)
        assert semantic(await queries.snapshot()) == expected


async def test_a_redelivery_is_counted_not_doubled(tmp_path: Path) -> None:
    flows = mix(4, start=NOW)
    steps = steps_of(flows)
    async with opened(tmp_path / "once.sqlite3") as (store, queries):
        await Fed(store).feed(as_records(steps), batch=7)
        once = semantic(await queries.snapshot())
    async with opened(tmp_path / "twice.sqlite3") as (store, queries):
        # every event twice: once in the same batch, once in a later one
        await Fed(store).feed(as_records(steps + steps + list(reversed(steps))), batch=9)
        twice = semantic(await queries.snapshot())
        totals = await queries.totals()
    assert totals["events"] == len(steps)
    assert totals["duplicates"] == 2 * len(steps)
    assert [e["deliveries"] for e in twice["events"]] == [3] * len(steps)
    assert [f["duplicates"] for f in twice["flows"]] == [
        2 * f["event_count"] for f in once["flows"]
    ]

    def strip(snap: dict[str, Any]) -> dict[str, Any]:
        return {
            "events": [{k: v for k, v in e.items() if k != "deliveries"} for e in snap["events"]],
            "flows": [{k: v for k, v in f.items() if k != "duplicates"} for f in snap["flows"]],
            "lifecycle": snap["lifecycle"],
        }

    assert strip(twice) == strip(once)


async def test_a_batch_whose_offsets_moved_is_refused_whole(tmp_path: Path) -> None:
    flows = mix(2, start=NOW)
    records = as_records(steps_of(flows), partitions=1)
    async with opened(tmp_path / "db.sqlite3") as (store, queries):
        fed = Fed(store)
        await fed.feed(records[:3], batch=3)
        before = await queries.snapshot()
        stale = {TopicPartition("orders", 0): Advance(None, 5)}  # as if another reader wrote first
        seen = [
            classify(r, lifecycle_types=LIFECYCLE_TYPES, payload_limit=100) for r in records[3:]
        ]
        with pytest.raises(FencedError, match=r"orders\[0\] was not at offset None"):
            await store.apply(seen, stale, micros(NOW))
        assert await queries.snapshot() == before
        assert await store.positions() == {
            TopicPartition(t, 0): o for t, _, o in before["positions"]
        }


async def test_overdue_flows_stall_once_and_publish_once(tmp_path: Path) -> None:
    flows = mix(
        3, outcomes=[Outcome.STOPS_AT_PAYMENT, Outcome.UNCOMPENSATED, Outcome.HAPPY], start=NOW
    )
    later = NOW + ORDER_SAGA.timeout + timedelta(seconds=1)
    async with opened(tmp_path / "db.sqlite3") as (store, queries):
        await Fed(store).feed(as_records(steps_of(flows)), batch=100)
        assert await store.sweep(micros(NOW)) == (0, [])
        judged, transitions = await store.sweep(micros(later))
        assert judged == 2
        assert sorted(t.type for t in transitions) == ["saga.failed", "saga.stalled"]
        assert await store.sweep(micros(later + timedelta(seconds=5))) == (0, [])
        counts = (await queries.counts()).by_status
        assert (counts["stalled"], counts["failed-uncompensated"], counts["completed"]) == (1, 1, 1)
        claimed = await store.claim("me", micros(later), 30_000_000, 10)
        assert sorted(p.type for p in claimed) == ["saga.completed", "saga.failed", "saga.stalled"]
        assert await store.claim("other", micros(later), 30_000_000, 10) == []  # leased
        await store.mark_sent([claimed[0].id], micros(later))
        after_lease = micros(later + timedelta(seconds=31))
        assert len(await store.claim("other", after_lease, 30_000_000, 10)) == 2
        assert (await queries.totals())["lifecycle_sent"] == 1


async def test_records_that_are_not_events_and_dead_letters_are_kept(tmp_path: Path) -> None:
    from tests.support import record

    flows = mix(1, start=NOW)
    good = as_records(steps_of(flows))
    junk = record("orders", value=b"not json", headers=[("ce_specversion", b"0.3")], offset=99)
    original = good[0]
    letter = record(
        "orders.dlq",
        value=original.value,
        headers=[
            *original.headers,
            ("choreo_dlq_error_type", b"PermanentError"),
            ("choreo_dlq_error_message", b"no stock system"),
            ("choreo_dlq_original_topic", b"orders"),
            ("choreo_dlq_original_partition", str(original.partition).encode()),
            ("choreo_dlq_original_offset", str(original.offset).encode()),
            ("choreo_dlq_consumer_group", b"inventory"),
            ("choreo_dlq_attempts", b"1"),
        ],
    )
    async with opened(tmp_path / "db.sqlite3") as (store, queries):
        await Fed(store).feed([*good, junk, letter, letter], batch=100)
        rejects, total = await queries.rejects(limit=10, offset=0)
        assert total == 1
        assert rejects[0].error_type == "InvalidEnvelopeError"
        letters, count = await queries.dead_letters(limit=10, offset=0, attached=True)
        assert count == 1
        assert letters[0].copies == 2
        assert letters[0].group == "inventory"
        assert letters[0].correlation_id == flows[0].correlation_id
        detail = await queries.flow(flows[0].correlation_id)
        assert detail is not None
        assert detail.dead_letters == 1
        assert detail.dead_letter_records[0].error_message == "no stock system"


async def test_migrating_twice_changes_nothing_and_a_newer_schema_is_refused(
    tmp_path: Path,
) -> None:
    async with opened(tmp_path / "db.sqlite3") as (store, _):
        assert await store.migrate() == (LATEST, LATEST)
        async with store._engine.begin() as conn:
            await conn.execute(update(schema_version).values(version=99))
        with pytest.raises(ConfigurationError, match="schema version 99, newer than this"):
            await store.migrate()


def refused(original: ConsumerRecord[bytes, bytes], group: str, error: str) -> Any:
    from tests.support import record

    return record(
        f"{original.topic}.dlq",
        value=original.value,
        headers=[
            *original.headers,
            ("choreo_dlq_error_type", error.encode()),
            ("choreo_dlq_error_message", b"refused"),
            ("choreo_dlq_original_topic", original.topic.encode()),
            ("choreo_dlq_original_partition", str(original.partition).encode()),
            ("choreo_dlq_original_offset", str(original.offset).encode()),
            ("choreo_dlq_consumer_group", group.encode()),
            ("choreo_dlq_attempts", b"1"),
        ],
        offset=original.offset,
    )


async def test_a_start_every_consumer_refuses_as_invalid_is_rejected_and_announced(
    tmp_path: Path,
) -> None:
    from choreokit.services.saga_observer.judge import Status

    flows = mix(2, start=NOW)
    records = as_records(steps_of(flows))

    def start_of(cid: str) -> ConsumerRecord[bytes, bytes]:
        found = next(r for r in records if dict(r.headers)["ce_correlationid"] == cid.encode())
        assert dict(found.headers)["ce_type"] == b"order.placed"
        return found

    start = start_of(flows[0].correlation_id)
    second = flows[1].correlation_id
    second_start = start_of(second)
    async with opened(tmp_path / "db.sqlite3") as (store, queries):
        fed = Fed(store)
        await fed.feed([start, second_start], batch=10)
        assert (await queries.flow(flows[0].correlation_id)).status == "running"  # type: ignore[union-attr]
        # An invalid payload: no consumer can ever accept it, so the flow ends at once.
        await fed.feed([refused(start, "inventory", "InvalidPayloadError")], batch=10)
        # A key conflict: another consumer still may; the flow ends at its deadline.
        await fed.feed([refused(second_start, "orders", "KeyConflictError")], batch=10)
        detail = await queries.flow(flows[0].correlation_id)
        assert detail is not None
        assert detail.status == "rejected"
        assert detail.dead_letters == 1
        assert (await queries.flow(second)).status == "running"  # type: ignore[union-attr]
        claimed = await store.claim("me", micros(NOW), 30_000_000, 10)
        assert [(p.correlation_id, p.type) for p in claimed] == [
            (flows[0].correlation_id, "saga.rejected")
        ]
        later = NOW + ORDER_SAGA.timeout + timedelta(seconds=1)
        _, transitions = await store.sweep(micros(later))
        assert [(t.correlation_id, t.type) for t in transitions] == [(second, "saga.rejected")]
        counts = await queries.counts()
        assert counts.by_status["rejected"] == 2
        listed, total = await queries.flows(
            FlowFilter(statuses=(Status.REJECTED,)), limit=10, offset=0
        )
        assert total == 2
        assert {f.correlation_id for f in listed} == {flows[0].correlation_id, second}
