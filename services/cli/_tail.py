"""``choreo tail``: decode and print what arrives on topics, the undecodable included."""

from __future__ import annotations

import asyncio
import json
import signal
from dataclasses import dataclass
from typing import Any

import click
from aiokafka import AIOKafkaConsumer, ConsumerRecord
from aiokafka.errors import KafkaError

from choreokit.events import (
    ChoreoError,
    KafkaSettings,
    Registry,
    decode,
    is_dead_letter_topic,
    record_time,
    to_structured,
    wire,
)
from choreokit.services.cli._common import bootstrap_option, run_async

ALL_TOPICS = r"^[^_].*"
"""Every topic but Kafka's internal ones (``__consumer_offsets`` and the like)."""


@dataclass(frozen=True, slots=True)
class Decoded:
    """One record as ``tail`` shows it."""

    status: str
    """``ok``, ``undecodable``, ``invalid`` (payload fails its schema) or ``unknown``."""
    attributes: dict[str, Any] | None
    data: Any
    error: str | None


def inspect_record(record: ConsumerRecord[bytes, bytes], registry: Registry) -> Decoded:
    """Decode ``record`` as far as it goes, never raising."""
    try:
        decoded = decode(record.headers, record.value, fallback_time=record_time(record.timestamp))
    except ChoreoError as exc:
        return Decoded("undecodable", None, _raw(record.value), f"{type(exc).__name__}: {exc}")
    structured = to_structured(decoded.envelope, None)
    attributes = {k: v for k, v in structured.items() if k != "data"}
    raw = decoded.data if decoded.structured else _raw(decoded.data)
    envelope = decoded.envelope
    if not registry.knows(envelope.type):
        return Decoded("unknown", attributes, raw, f"type {envelope.type!r} is not declared here")
    try:
        event = decoded.event(registry.model(envelope.type, envelope.dataversion))
    except ChoreoError as exc:
        return Decoded("invalid", attributes, raw, f"{type(exc).__name__}: {exc}")
    return Decoded("ok", attributes, event.model_dump(mode="json"), None)


def _raw(value: bytes | None) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except ValueError:
        return value[:512].decode("utf-8", "backslashreplace")


def _headers(record: ConsumerRecord[bytes, bytes]) -> dict[str, str]:
    return {
        k: (v.decode("utf-8", "backslashreplace") if v is not None else "")
        for k, v in record.headers
    }


def dead_letter_reason(record: ConsumerRecord[bytes, bytes]) -> str | None:
    """Why a dead-lettered record failed, and where it came from (``None`` for other records)."""
    headers = _headers(record)
    error_type = headers.get(wire.H_ERROR_TYPE)
    if error_type is None and not is_dead_letter_topic(record.topic):
        return None
    message = headers.get(wire.H_ERROR_MESSAGE)
    reason = f"{error_type or 'unknown error'}" + (f": {message}" if message else "")
    origin = headers.get(wire.H_ORIGINAL_TOPIC)
    if origin is not None:
        partition = headers.get(wire.H_ORIGINAL_PARTITION, "?")
        offset = headers.get(wire.H_ORIGINAL_OFFSET, "?")
        reason += f" (from {origin}[{partition}]@{offset}"
        if wire.H_CONSUMER_GROUP in headers:
            reason += f", group {headers[wire.H_CONSUMER_GROUP]}"
        if wire.H_ATTEMPTS in headers:
            reason += f", {headers[wire.H_ATTEMPTS]} attempts"
        reason += ")"
    return reason


def render(record: ConsumerRecord[bytes, bytes], shown: Decoded, *, as_json: bool) -> str:
    """Format one record for the terminal (or as one JSON line)."""
    where = f"{record.topic}[{record.partition}]@{record.offset}"
    if as_json:
        return json.dumps(
            {
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
                "timestamp": record.timestamp,
                "key": record.key.decode("utf-8", "backslashreplace") if record.key else None,
                "status": shown.status,
                "attributes": shown.attributes,
                "data": shown.data,
                "error": shown.error,
                "headers": _headers(record),
            },
            default=str,
        )
    lines = []
    if shown.attributes is None:
        lines.append(f"{where} UNDECODABLE {shown.error}")
        lines.append(f"  headers: {json.dumps(_headers(record))}")
    else:
        a = shown.attributes
        label = {"ok": "", "invalid": " INVALID", "unknown": " UNKNOWN TYPE"}[shown.status]
        lines.append(f"{where} {a['type']} v{a['dataversion']}{label} id={a['id']}")
        lines.append(
            f"  source={a['source']} time={a['time']} correlation={a['correlationid']}"
            f" causation={a.get('causationid', '-')}"
        )
        if shown.error:
            lines.append(f"  error: {shown.error}")
    reason = dead_letter_reason(record)
    if reason is not None:
        lines.append(f"  dead letter: {reason}")
    lines.append(f"  data: {json.dumps(shown.data, default=str)}")
    return "\n".join(lines)


@click.command()
@click.argument("topics", nargs=-1)
@click.option("--from-beginning", is_flag=True, help="Start at the oldest record, not the newest.")
@click.option(
    "--max", "max_records", type=click.IntRange(min=1), default=None, help="Stop after N."
)
@click.option(
    "--idle",
    type=click.FloatRange(min=0.1),
    default=None,
    help="Stop once nothing has arrived for this many seconds.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per record.")
@bootstrap_option
def tail(
    topics: tuple[str, ...],
    from_beginning: bool,
    max_records: int | None,
    idle: float | None,
    as_json: bool,
    bootstrap: str,
) -> None:
    """Print events arriving on TOPICS (default: every topic), decoded.

    Records that are not valid events are printed as UNDECODABLE with the
    reason; payloads that fail their schema as INVALID; nothing is skipped.
    No consumer group is joined and no offset is committed.
    """
    from choreokit.events import (
        broker_unavailable,
        client_options,
        default_registry,
        reader_options,
    )
    from choreokit.services.runtime.discovery import load_event_modules

    load_event_modules()
    settings = KafkaSettings(bootstrap=bootstrap)

    async def consume() -> int:
        consumer = AIOKafkaConsumer(
            **client_options(settings),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest" if from_beginning else "latest",
            fetch_max_wait_ms=100,
            **reader_options(settings),
        )
        if topics:
            consumer.subscribe(topics=list(topics))
        else:
            consumer.subscribe(pattern=ALL_TOPICS)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        seen = 0
        try:
            await consumer.start()
        except KafkaError as exc:
            await consumer.stop()
            raise broker_unavailable(settings, exc, "reading topics") from exc
        try:
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=int((idle or 0.5) * 1000))
                # Idleness counts only once partitions are assigned (joining takes a moment).
                if not batch and idle is not None and consumer.assignment():
                    break
                for record in (r for records in batch.values() for r in records):
                    click.echo(
                        render(record, inspect_record(record, default_registry), as_json=as_json)
                    )
                    seen += 1
                    if max_records is not None and seen >= max_records:
                        return seen
        finally:
            await consumer.stop()
        return seen

    run_async(consume)
