"""choreokit.testing.ServiceKit drives a real Service's consuming core in memory."""

from __future__ import annotations

from pathlib import Path

import pytest
from opentelemetry.trace import SpanKind

from choreokit.events import (
    ConfigurationError,
    Event,
    HandlerContext,
    PermanentError,
    Registry,
    RetryPolicy,
    Service,
)
from choreokit.events.sql import Inbox, create_tables
from choreokit.services.runtime.database import create_engine
from choreokit.testing import CapturedSpans, ServiceKit

reg = Registry()


class ItemAddedV1(Event, type="kit.item.added", version=1, topic="kit.items", registry=reg):
    n: int


class ItemAdded(Event, type="kit.item.added", version=2, topic="kit.items", registry=reg):
    n: int
    label: str


class ItemIgnored(Event, type="kit.item.ignored", version=1, topic="kit.items", registry=reg):
    pass


class ItemSeen(Event, type="kit.item.seen", version=1, topic="kit.seen", registry=reg):
    n: int
    label: str


reg.add_upcaster(ItemAddedV1, ItemAdded, lambda old: ItemAdded(n=old.n, label="upcast"))


class FlakyError(Exception):
    pass


def counting_service(*, fail_first: int = 0, retry: RetryPolicy | None = None) -> Service:
    """A service that publishes ItemSeen for each ItemAdded, failing its first tries if told."""
    service = Service("kit-counter", registry=reg, publishes=[ItemSeen], retry=retry)
    tries = {"n": 0}

    @service.handler(ItemAdded)
    async def seen(event: ItemAdded, ctx: HandlerContext) -> None:
        tries["n"] += 1
        if tries["n"] <= fail_first:
            raise FlakyError(f"try {tries['n']}")
        if event.n < 0:
            raise PermanentError("negative counts are a bug upstream")
        await ctx.publish(ItemSeen(n=event.n, label=event.label))

    return service


async def test_a_delivered_event_is_handled_its_consequence_published_its_offset_committed() -> (
    None
):
    async with ServiceKit(counting_service()) as kit:
        handling = await kit.deliver(ItemAdded(n=3, label="x"), correlation_id="flow-1")
    assert handling.complete
    seen = handling.one(ItemSeen)
    assert (seen.n, seen.label) == (3, "x")
    published = handling.published[0]
    assert published.topic == "kit.seen"
    assert published.envelope.correlation_id == "flow-1"
    assert published.envelope.causation_id == handling.envelope.id  # type: ignore[union-attr]
    assert published.record.key == b"flow-1"
    assert kit.committed(ItemAdded) == 1
    assert kit.stats.handled == 1


async def test_older_versions_arrive_upcast_as_in_production() -> None:
    async with ServiceKit(counting_service()) as kit:
        handling = await kit.deliver(ItemAddedV1(n=1))
    assert handling.one(ItemSeen).label == "upcast"


async def test_retries_follow_the_service_policy_without_waiting_its_backoff() -> None:
    service = counting_service(fail_first=2, retry=RetryPolicy(max_attempts=3))
    async with ServiceKit(service) as kit:
        handling = await kit.deliver(ItemAdded(n=1, label="x"))
    assert handling.complete
    assert kit.stats.retries == 2
    assert len(handling.events(ItemSeen)) == 1


async def test_exhausted_retries_and_permanent_errors_dead_letter_with_the_original_bytes() -> None:
    service = counting_service(fail_first=2, retry=RetryPolicy(max_attempts=2))
    async with ServiceKit(service) as kit:
        handling = await kit.deliver(ItemAdded(n=1, label="x"))
        permanent = await kit.deliver(ItemAdded(n=-1, label="x"))
    (dead,) = handling.dead_letters
    assert (dead.original_topic, dead.error_type, dead.attempts) == ("kit.items", "FlakyError", 2)
    assert dead.record.topic == "kit.items.dlq"
    assert dead.record.value == handling.records[0].value
    assert dead.group == "kit-counter"
    (refused,) = permanent.dead_letters
    assert (refused.error_type, refused.attempts) == ("PermanentError", 1)
    assert handling.published == permanent.published == ()
    assert kit.committed(ItemAdded) == 2  # dead-lettered records are done, hence committed
    assert len(kit.dead_letters()) == 2


async def test_hostile_records_and_unwanted_types_take_the_production_decisions() -> None:
    async with ServiceKit(counting_service()) as kit:
        hostile = await kit.deliver_raw("kit.items", value=b"{not json", headers=[])
        unwanted = await kit.deliver(ItemIgnored())
    assert hostile.dead_letters[0].error_type == "InvalidEnvelopeError"
    assert unwanted.dead_letters == ()
    assert unwanted.published == ()
    assert kit.stats.skipped["kit.item.ignored"] == 1


async def test_a_refused_send_leaves_the_record_uncommitted_redelivery_publishes_the_same_ids() -> (
    None
):
    async with ServiceKit(counting_service()) as kit:
        kit.failing(ItemSeen)
        first = await kit.deliver(ItemAdded(n=1, label="x"))
        assert not first.complete
        assert kit.committed(ItemAdded) == 0
        assert kit.stats.redelivered_batches == 1
        kit.healed()
        again = await kit.redeliver()
    assert again.complete
    assert kit.committed(ItemAdded) == 1
    assert again.records[0].offset == first.records[0].offset
    # The same cause derives the same id: the refused try would have sent this very event.
    assert again.published[0].envelope.id == kit.published(ItemSeen)[0].envelope.id


async def test_the_inbox_middleware_runs_and_drops_a_duplicate_delivery(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'inbox.sqlite3'}")
    await create_tables(engine)
    service = counting_service()
    inbox = Inbox(engine, consumer=service.name, registry=reg)
    service.use(inbox)
    try:
        async with ServiceKit(service) as kit:
            first = await kit.deliver(ItemAdded(n=1, label="x"), event_id="evt-1")
            second = await kit.deliver(ItemAdded(n=1, label="x"), event_id="evt-1")
    finally:
        await engine.dispose()
    assert inbox.duplicates == 1
    # The duplicate republishes what the first handling recorded, with its id.
    assert first.published[0].envelope.id == second.published[0].envelope.id


async def test_chained_kits_share_one_log_and_keep_causation(choreo_spans: CapturedSpans) -> None:
    counter = counting_service()
    counter.use(choreo_spans.middleware)
    echoes: list[ItemSeen] = []
    listener = Service("kit-listener", registry=reg)
    listener.use(choreo_spans.middleware)

    @listener.handler(ItemSeen)
    async def note(event: ItemSeen) -> None:
        echoes.append(event)

    async with ServiceKit(counter) as upstream, ServiceKit(listener, log=upstream.log) as down:
        handling = await upstream.deliver(ItemAdded(n=7, label="x"))
        await down.deliver_published(handling.published)
    assert echoes == [ItemSeen(n=7, label="x")]
    assert down.committed(ItemSeen) == 1
    process = choreo_spans.finished(kind=SpanKind.CONSUMER)
    assert [s.name for s in process] == ["process kit.items", "process kit.seen"]
    trace_ids = {s.context.trace_id for s in choreo_spans.finished() if s.context}
    assert len(trace_ids) == 1  # one trace across both hops


async def test_a_started_kit_rejects_a_running_service_and_an_idle_kit_refuses_to_deliver() -> None:
    kit = ServiceKit(counting_service())
    with pytest.raises(ConfigurationError, match="not started"):
        await kit.deliver(ItemAdded(n=1, label="x"))
    async with kit:
        with pytest.raises(ConfigurationError, match="already started"):
            await ServiceKit(kit.service).start()
        with pytest.raises(ConfigurationError, match="nothing to redeliver"):
            await kit.redeliver()


async def test_publishing_outside_a_handler_goes_through_the_declared_publishes() -> None:
    async with ServiceKit(counting_service()) as kit:
        published = await kit.publish(ItemSeen(n=1, label="x"))
        with pytest.raises(ConfigurationError, match="publishes"):
            await kit.service.publish(ItemAdded(n=1, label="x"))
    assert published.envelope.causation_id is None
    assert kit.published() == [published]


async def test_records_of_a_flow_keep_one_partition_when_topics_have_several() -> None:
    async with ServiceKit(counting_service(), partitions=4) as kit:
        handling = await kit.deliver(
            ItemAdded(n=1, label="a"), ItemAdded(n=2, label="b"), correlation_id="flow-9"
        )
    assert len({r.partition for r in handling.records}) == 1
    assert handling.published[0].record.partition == handling.records[0].partition
    assert [e.n for e in handling.events(ItemSeen)] == [1, 2]
