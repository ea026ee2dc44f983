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
