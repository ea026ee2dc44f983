"""Every kind of bad record lands in <topic>.dlq with its error; good ones after it are handled."""

from __future__ import annotations

from datetime import timedelta

import pytest

from choreokit.events import (
    Envelope,
    HandlerContext,
    KafkaSettings,
    PermanentError,
    RetryPolicy,
    Service,
    encode_headers,
)
from tests.integration.kafka_io import headers_of, produce_raw, read_topic
from tests.support import catalog, envelope_for, unique, wait_for

pytestmark = pytest.mark.engines("tansu", "kafka")


def good(cat: object, n: int) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    event = cat.v2(n=n, label="ok")  # type: ignore[attr-defined]
    envelope = envelope_for(event, event_id=f"good-{n}")
    return b"k", event.model_dump_json().encode(), encode_headers(envelope)


def headers(envelope: Envelope, **overrides: bytes | None) -> list[tuple[str, bytes]]:
    out = []
    for key, value in encode_headers(envelope):
        if key in overrides:
            replacement = overrides.pop(key)
            if replacement is not None:
                out.append((key, replacement))
        else:
            out.append((key, value))
    out.extend((k, v) for k, v in overrides.items() if v is not None)
    return out


async def test_bad_records_go_to_the_dead_letter_topic_and_the_consumer_carries_on(
    kafka: KafkaSettings,
) -> None:
    cat = catalog()
    handled: list[int] = []
    service = Service(
        unique("consumer"),
        registry=cat.registry,
        settings=kafka,
        retry=RetryPolicy(max_attempts=2, first_backoff=timedelta(milliseconds=10)),
    )

    @service.handler(cat.v2)
    async def on_item(event: object, ctx: HandlerContext) -> None:
        if event.label == "explode":  # type: ignore[attr-defined]
            raise PermanentError("the handler refuses this item")
        handled.append(event.n)  # type: ignore[attr-defined]

    envelope = envelope_for(cat.v2(n=0, label="x"), event_id="bad")
    bad = [
        ("MalformedJsonError", b"{not json", headers(envelope)),
        ("InvalidEnvelopeError", b"{}", headers(envelope, ce_id=None)),
        ("InvalidEnvelopeError", b"{}", headers(envelope, ce_specversion=b"0.3")),
        ("InvalidEnvelopeError", b"{}", headers(envelope, ce_source=b"\xff\xfe")),
        ("InvalidEnvelopeError", b"{}", headers(envelope, ce_time=b"last tuesday")),
        ("UnknownEventTypeError", b"{}", headers(envelope, ce_type=b"item.teleported")),
        ("VersionTooNewError", b'{"n": 1}', headers(envelope, ce_dataversion=b"3")),
        ("InvalidPayloadError", b'{"n": "one"}', headers(envelope)),
        (
            "UnsupportedContentTypeError",
            b"<xml/>",
            headers(envelope, **{"content-type": b"text/xml"}),
        ),
        ("PermanentError", b'{"n": 5, "label": "explode"}', headers(envelope)),
    ]
    records = []
    for n, (_, value, hdrs) in enumerate(bad):
        records.append(good(cat, n))
        records.append((f"bad-{n}".encode(), value, hdrs))
    records.append(good(cat, len(bad)))

    async with service:
        await produce_raw(kafka.bootstrap, cat.topic, records)
        await wait_for(lambda: len(handled) == len(bad) + 1, what="every good record")
        dead = await read_topic(kafka.bootstrap, f"{cat.topic}.dlq", len(bad))

    dead.sort(key=lambda r: int(headers_of(r)["choreo_dlq_original_offset"]))
    assert handled == list(range(len(bad) + 1))
    assert service.stats.dead_lettered == len(bad)
    for n, ((error_type, value, hdrs), record) in enumerate(zip(bad, dead, strict=True)):
        meta = headers_of(record)
        assert meta["choreo_dlq_error_type"] == error_type, meta
        assert record.key == f"bad-{n}".encode()
        assert record.value == value
        original = [(k, v) for k, v in record.headers if not k.startswith("choreo_dlq_")]
        assert original == hdrs
        assert meta["choreo_dlq_original_topic"] == cat.topic
        assert meta["choreo_dlq_original_partition"] == "0"
        assert meta["choreo_dlq_original_offset"] == str(2 * n + 1)
        assert meta["choreo_dlq_consumer_group"] == service.name
        assert meta["choreo_dlq_error_message"]
        assert meta["choreo_dlq_failed_at"]
    assert "ce_id" in headers_of(dead[1])["choreo_dlq_error_message"]
    assert "v3 is newer than the handler's v2" in headers_of(dead[6])["choreo_dlq_error_message"]
    assert "n: Input should be a valid integer" in headers_of(dead[7])["choreo_dlq_error_message"]


async def test_types_no_handler_wants_are_skipped_and_counted(kafka: KafkaSettings) -> None:
    cat = catalog()
    handled: list[int] = []
    service = Service(unique("consumer"), registry=cat.registry, settings=kafka)

    @service.handler(cat.v2)
    async def on_item(event: object) -> None:
        handled.append(event.n)  # type: ignore[attr-defined]

    sibling = cat.sibling(total=3)
    records = [
        (b"k", sibling.model_dump_json().encode(), encode_headers(envelope_for(sibling))),
        good(cat, 1),
    ]
    async with service:
        await produce_raw(kafka.bootstrap, cat.topic, records)
        await wait_for(lambda: handled == [1], what="the wanted record")
    assert service.stats.skipped == {"item.counted": 1}
    assert service.stats.dead_lettered == 0
