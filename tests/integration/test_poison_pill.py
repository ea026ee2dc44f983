"""poison_pill: one always-failing record does not hold up the 999 behind it on its partition."""

from __future__ import annotations

import itertools
import json
import time
from datetime import timedelta

import pytest

from choreokit.events import HandlerContext, KafkaSettings, RetryPolicy, Service, encode_headers
from tests.integration.kafka_io import headers_of, produce_raw, read_topic
from tests.support import catalog, envelope_for, unique, wait_for

pytestmark = pytest.mark.engines("tansu", "kafka")

TOTAL = 1000
POISON = 10
BACKOFF = timedelta(milliseconds=400)
ATTEMPTS = 4


async def test_poison_pill_is_retried_aside_while_the_other_999_are_handled(
    kafka: KafkaSettings,
) -> None:
    """Other keys finish before the poison's retries end; 1 DLQ record; tries keep the backoff."""
    cat = catalog()
    handled: dict[int, float] = {}
    attempts: list[float] = []
    service = Service(
        unique("poison"),
        registry=cat.registry,
        settings=kafka,
        retry=RetryPolicy(max_attempts=ATTEMPTS, first_backoff=BACKOFF, multiplier=1.0, jitter=0),
    )

    @service.handler(cat.v2)
    async def on_item(event: object, ctx: HandlerContext) -> None:
        n = event.n  # type: ignore[attr-defined]
        if n == POISON:
            attempts.append(time.monotonic())
            raise ConnectionError(f"item {n} never gets through")
        handled[n] = time.monotonic()

    records = []
    for n in range(TOTAL):
        event = cat.v2(n=n, label="ok")
        envelope = envelope_for(event, event_id=f"item-{n}", correlation_id=f"flow-{n}")
        records.append(
            (f"flow-{n}".encode(), event.model_dump_json().encode(), encode_headers(envelope))
        )

    await produce_raw(kafka.bootstrap, cat.topic, records)
    async with service:
        await wait_for(lambda: len(handled) == TOTAL - 1, timeout=60, what="the other 999")
        others_done = time.monotonic()
        [dead] = await read_topic(kafka.bootstrap, f"{cat.topic}.dlq", 1, timeout=30)
        assert len(attempts) == ATTEMPTS

    assert others_done < attempts[-1], "the other records waited for the poison's retries"
    assert max(handled.values()) < attempts[-1]
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    print(  # the fault suite's figures (docs/reliability.md); run with -s to see them
        f"poison_pill: {TOTAL - 1} others handled {attempts[-1] - others_done:.2f}s before the "
        f"poison's last of {len(attempts)} attempts; gaps {', '.join(f'{g:.3f}s' for g in gaps)} "
        f"(backoff {BACKOFF.total_seconds():.1f}s); 1 DLQ record"
    )
    for gap in gaps:
        assert BACKOFF.total_seconds() * 0.95 <= gap < BACKOFF.total_seconds() + 1.0, gaps
    key, value, original = records[POISON]
    assert dead.key == key
    assert dead.value == value
    assert [(k, v) for k, v in dead.headers if not k.startswith("choreo_dlq_")] == original
    meta = headers_of(dead)
    assert meta["choreo_dlq_attempts"] == str(ATTEMPTS)
    assert meta["choreo_dlq_error_type"] == "ConnectionError"
    assert "on_item" in meta["choreo_dlq_error_frame"]
    assert "never gets through" in meta["choreo_dlq_traceback"]
    assert json.loads(meta["choreo_dlq_error_chain"])[0]["type"] == "ConnectionError"
    assert service.stats.dead_lettered == 1
    assert service.stats.parked == 1
