"""Where choreokit leans on a library's internals, a test here fails when an upgrade moves them.

docs/tracing.md ("Where we lean on library internals") lists each seam and its test.
"""

from __future__ import annotations

from typing import Any

from aiokafka.errors import ConsumerStoppedError
from faststream.kafka import KafkaBroker
from faststream.middlewares import AckPolicy


async def test_faststreams_batch_subscriber_still_polls_through_get_msg() -> None:
    """Service replaces the batch subscriber's ``get_msg`` (one getmany, no extra sleep)."""
    broker = KafkaBroker(consumer_only=True, apply_types=False)
    subscriber = broker.subscriber("seam", group_id="seam", batch=True, ack_policy=AckPolicy.MANUAL)
    polled: list[Any] = []
    consumer = object()

    async def poll(given: Any) -> Any:
        polled.append(given)
        raise ConsumerStoppedError

    subscriber.get_msg = poll  # type: ignore[method-assign,assignment]
    subscriber.running = True
    await subscriber._run_consume_loop(consumer)
    assert polled == [consumer]
    assert subscriber.consumer is None  # set at start; Service reads it to commit and seek


def test_aiokafkas_fetcher_puts_its_wait_attribute_into_each_fetch_request_it_builds() -> None:
    """FetchWait (events/_fetch_wait.py) sets ``consumer._fetcher._fetch_max_wait_ms`` between
    polls; that works only while the fetcher reads it anew for every request it builds."""
    from types import SimpleNamespace

    from aiokafka import TopicPartition
    from aiokafka.consumer.fetcher import Fetcher

    from choreokit.events._fetch_wait import fetch_wait_of

    fetcher: Any = Fetcher.__new__(Fetcher)  # the state _get_actions_per_node reads, no task
    fetcher.__dict__.update(
        _records={},
        _in_flight=set(),
        _preferred_read_replica={},
        _client=SimpleNamespace(cluster=SimpleNamespace(leader_for_partition=lambda tp: 0)),
        _max_partition_fetch_bytes=1 << 20,
        _fetch_max_wait_ms=20,
        _fetch_min_bytes=1,
        _fetch_max_bytes=50 << 20,
        _isolation_level=0,
        _client_rack=None,
        _fetcher_timeout=0.2,
    )
    tp = TopicPartition("seam", 0)
    state = SimpleNamespace(has_valid_position=True, paused=False, position=7)
    assignment = SimpleNamespace(tps={tp}, state_value=lambda _: state)
    for wait in (20, 300, 20):
        fetcher._fetch_max_wait_ms = wait
        assert fetch_wait_of(SimpleNamespace(_fetcher=fetcher)) == wait
        [(node, request)] = fetcher._get_actions_per_node(assignment)[0]
        assert (node, request._max_wait_ms) == (0, wait)
