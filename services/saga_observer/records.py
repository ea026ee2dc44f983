"""What a Kafka record is to the observer: an event, a lifecycle event, a dead letter, or junk.

Every record gets exactly one of these answers; none is dropped silently.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache, lru_cache
from typing import Any

from aiokafka import ConsumerRecord

from choreokit.events import (
    ChoreoError,
    Envelope,
    Event,
    Registry,
    decode,
    default_registry,
    has_sensitive,
    header_value,
    is_dead_letter_topic,
    record_time,
    redact,
)
from choreokit.events.dlq import fingerprint
from choreokit.events.wire import (
    AUDIT_TOPIC,
    DLQ_HEADER_PREFIX,
    H_ATTEMPTS,
    H_CONSUMER_GROUP,
    H_CORRELATION,
    H_ERROR_FRAME,
    H_ERROR_MESSAGE,
    H_ERROR_TYPE,
    H_FAILED_AT,
    H_ID,
    H_ORIGINAL_OFFSET,
    H_ORIGINAL_PARTITION,
    H_ORIGINAL_TOPIC,
    H_TYPE,
)
from choreokit.tracing import parse_traceparent

MAX_TEXT = 4096


@dataclass(frozen=True, slots=True)
class Position:
    """Where a record sits in Kafka."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class SeenEvent:
    """A valid CloudEvent of a flow.

    Attributes:
        envelope: Its attributes.
        position: Where it was read.
        payload: The JSON payload as text (``None`` when larger than the limit).
        size: The payload's size in bytes.
    """

    envelope: Envelope
    position: Position
    payload: str | None
    size: int


@dataclass(frozen=True, slots=True)
class SeenLifecycle:
    """One of the observer's own ``saga.*`` events, read back from Kafka."""

    envelope: Envelope
    position: Position
    payload: str | None


@dataclass(frozen=True, slots=True)
class SeenDeadLetter:
    """A record some consumer gave up on, attached to its flow where the headers allow.

    Attributes:
        key: The dead-lettering's identity: the original position and the group
            when the headers name them, else the dead letter's own position.
        correlation_id: The flow, if the original headers carry one.
        event_id: The original event's id, if known.
        event_type: The original event's type, if known.
        error_type: The error class the consumer reported.
        error_message: Its message.
        group: The consumer group that gave up.
        attempts: How many times the handler ran.
        failed_at: When it was dead-lettered.
        original: The original record's position, if known.
        position: The dead letter's own position.
        frame: Where the error was raised (``file:function``), if known.
        fingerprint: The failure group (error type, normalised message, frame).
    """

    key: str
    correlation_id: str | None
    event_id: str | None
    event_type: str | None
    error_type: str
    error_message: str
    group: str | None
    attempts: int | None
    failed_at: datetime
    original: Position | None
    position: Position
    frame: str = ""
    fingerprint: str = ""


@dataclass(frozen=True, slots=True)
class SeenAudit:
    """An entry of the dead-letter audit topic: a replay, a purge, or a replay's outcome.

    Attributes:
        position: Where it was read.
        dead_letter: The dead letter it is about, as its position.
        action: ``replay``, ``purge`` or ``outcome``.
        result: ``sent``/``error`` (replay), ``handled``/``failed`` (outcome).
        at: When it happened.
    """

    position: Position
    dead_letter: Position
    action: str
    result: str | None
    at: datetime


@dataclass(frozen=True, slots=True)
class SeenReject:
    """A record that is not an event at all, with why."""

    position: Position
    error_type: str
    error_message: str
    key: str | None
    size: int
    timestamp: datetime


Seen = SeenEvent | SeenLifecycle | SeenDeadLetter | SeenAudit | SeenReject


def classify(
    record: ConsumerRecord[bytes, bytes],
    *,
    lifecycle_types: frozenset[str],
    payload_limit: int,
    registry: Registry | None = None,
) -> Seen:
    """Say what ``record`` is; never raises (a record that breaks reading is a reject).

    The payload is kept with the fields that ``registry``'s model (by default, the
    process's: every model the saga specs' packages declare) marks sensitive redacted.
    A type or version the registry does not know is kept as it came.
    """
    position = Position(record.topic, record.partition, record.offset)
    try:
        return _classify(
            record, position, lifecycle_types, payload_limit, registry or default_registry
        )
    except Exception as exc:  # noqa: BLE001 - no record's content may stop ingest
        return _reject(record, position, exc)


def _classify(
    record: ConsumerRecord[bytes, bytes],
    position: Position,
    lifecycle_types: frozenset[str],
    payload_limit: int,
    registry: Registry,
) -> Seen:
    if is_dead_letter_topic(record.topic):
        return _dead_letter(record, position)
    if record.topic == AUDIT_TOPIC:
        return _audit(record, position)
    try:
        decoded = decode(record.headers, record.value, fallback_time=record_time(record.timestamp))
    except ChoreoError as exc:
        return _reject(record, position, exc)
    envelope, data, structured = decoded.envelope, decoded.data, decoded.structured
    payload, size = _payload(data, structured, payload_limit)
    if payload is not None:
        model = _model(registry, envelope)
        if model is not None and _has_sensitive(model):
            payload = _redacted(model, payload)
    if envelope.type in lifecycle_types:
        return SeenLifecycle(envelope, position, payload)
    return SeenEvent(envelope, position, payload, size)


def _payload(data: Any, structured: bool, limit: int) -> tuple[str | None, int]:
    if not structured:
        raw = data if isinstance(data, bytes) else b""
        try:
            text = raw.decode()
        except UnicodeDecodeError:
            pass
        else:  # valid UTF-8 (the normal case): its text and size as they came
            return (text if len(raw) <= limit else None), len(raw)
        text = raw.decode("utf-8", "replace")
    else:
        text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    encoded = text.encode("utf-8", "surrogatepass")
    size = len(encoded)
    # A structured payload may hold lone surrogates (JSON escapes allow them): keep it
    # storable as UTF-8, with replacement characters where they were.
    if size > limit:
        return None, size
    return encoded.decode("utf-8", "replace"), size


@cache
def _has_sensitive(model: type[Event]) -> bool:
    """``has_sensitive``, once per model (a class's fields do not change)."""
    return has_sensitive(model)


def _model(registry: Registry, envelope: Envelope) -> type[Event] | None:
    if not registry.knows(envelope.type):
        return None
    try:
        return registry.model(envelope.type, envelope.dataversion)
    except ChoreoError:
        return None


def _redacted(model: type[Event], payload: str) -> str:
    try:
        data = json.loads(payload)
    except ValueError:
        # Not the JSON object the model reads: nothing of it can be told apart, keep none.
        return json.dumps({"redacted": "the payload is not JSON; a sensitive type's is not kept"})
    return json.dumps(redact(model, data), separators=(",", ":"), ensure_ascii=False)


def rejected(seen: Seen, error: BaseException) -> SeenReject:
    """``seen`` as a reject: the observer could not record it (its content broke the store)."""
    size = seen.size if isinstance(seen, SeenEvent) else 0
    return SeenReject(
        position=seen.position,
        error_type=type(error).__name__,
        # The first line only: a database error goes on with the statement and its values.
        error_message=f"the observer could not record this record: {_first_line(error)}"[:MAX_TEXT],
        key=None,
        size=size,
        timestamp=datetime.now(UTC),
    )


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _reject(
    record: ConsumerRecord[bytes, bytes], position: Position, exc: BaseException
) -> SeenReject:
    return SeenReject(
        position=position,
        error_type=type(exc).__name__,
        error_message=str(exc)[:MAX_TEXT],
        key=_text(record.key),
        size=len(record.value or b""),
        timestamp=record_time(record.timestamp),
    )


def _audit(record: ConsumerRecord[bytes, bytes], position: Position) -> SeenAudit | SeenReject:
    try:
        entry = json.loads(record.value or b"")
        topic, partition, offset = str(entry["dead_letter"]).rsplit("/", 2)
        target = Position(topic, int(partition), int(offset))
        action = str(entry["action"])[:32]
        result = entry.get("result")
        at = datetime.fromtimestamp(float(entry.get("at", 0)), UTC)
    except (ValueError, KeyError, TypeError, OverflowError, OSError) as exc:
        return SeenReject(
            position=position,
            error_type="InvalidAuditEntry",
            error_message=f"not a dead-letter audit entry: {type(exc).__name__}: {exc}"[:MAX_TEXT],
            key=_text(record.key),
            size=len(record.value or b""),
            timestamp=record_time(record.timestamp),
        )
    return SeenAudit(position, target, action, str(result)[:32] if result else None, at)


def _dead_letter(record: ConsumerRecord[bytes, bytes], position: Position) -> SeenDeadLetter:
    headers: Sequence[tuple[str, bytes | None]] = tuple(record.headers)
    original_headers = [(k, v) for k, v in headers if not k.startswith(DLQ_HEADER_PREFIX)]
    envelope: Envelope | None
    try:
        envelope = decode(
            original_headers, record.value, fallback_time=record_time(record.timestamp)
        ).envelope
    except ChoreoError:
        envelope = None
    correlation = envelope.correlation_id if envelope else _header(headers, H_CORRELATION)
    event_id = envelope.id if envelope else _header(headers, H_ID)
    original = _original(headers)
    group = _header(headers, H_CONSUMER_GROUP)
    if original is not None:
        key = f"{original.topic}/{original.partition}/{original.offset}/{group or ''}"
    else:
        key = f"{position.topic}/{position.partition}/{position.offset}"
    error_type = _header(headers, H_ERROR_TYPE) or "unknown"
    error_message = (_header(headers, H_ERROR_MESSAGE) or "")[:MAX_TEXT]
    frame = (_header(headers, H_ERROR_FRAME) or "")[:512]
    return SeenDeadLetter(
        frame=frame,
        fingerprint=fingerprint(error_type, error_message, frame),
        key=key[:1024],
        correlation_id=correlation,
        event_id=event_id,
        event_type=envelope.type if envelope else _header(headers, H_TYPE),
        error_type=error_type,
        error_message=error_message,
        group=group,
        attempts=_int(_header(headers, H_ATTEMPTS)),
        failed_at=_time(_header(headers, H_FAILED_AT)) or record_time(record.timestamp),
        original=original,
        position=position,
    )


def _original(headers: Sequence[tuple[str, bytes | None]]) -> Position | None:
    topic = _header(headers, H_ORIGINAL_TOPIC)
    partition = _int(_header(headers, H_ORIGINAL_PARTITION))
    offset = _int(_header(headers, H_ORIGINAL_OFFSET))
    if topic is None or partition is None or offset is None:
        return None
    return Position(topic, partition, offset)


def _header(headers: Sequence[tuple[str, bytes | None]], name: str) -> str | None:
    value = header_value(headers, name)
    if value is None or not value.strip():
        return None
    return value[:1024]


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def _time(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _text(raw: bytes | None) -> str | None:
    if raw is None:
        return None
    return raw[:256].decode("utf-8", "replace")


@lru_cache(maxsize=1024)
def service_of(source: str) -> str:
    """The service behind a ``ce_source``: ``/services/orders`` -> ``orders``."""
    parts = [p for p in source.split("/") if p]
    if len(parts) >= 2 and parts[0] == "services":  # noqa: PLR2004 - "/services/<name>"
        return parts[1]
    return source


def micros(moment: datetime) -> int:
    """``moment`` in whole microseconds since the epoch."""
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(value: int) -> datetime:
    """The aware UTC datetime of ``value`` microseconds since the epoch.

    A value beyond what a datetime can hold (stored before times were bounded, or
    a deadline computed from such a time) gives the nearest one it can, so no
    stored number can make a query fail.
    """
    if value < _MIN_US:
        return _FIRST
    if value > _MAX_US:
        return _LAST
    return _EPOCH + timedelta(microseconds=value)


def trace_id(traceparent: str | None) -> str | None:
    """The trace id of a W3C ``traceparent`` (``None`` if absent or malformed)."""
    if not traceparent:
        return None
    match = _VERSION_00.fullmatch(traceparent)
    if match is not None:  # what choreokit's producers write: read without a span context
        found = match[1]
        return found if found != _NO_TRACE and match[2] != _NO_SPAN else None
    context = parse_traceparent(traceparent)
    return None if context is None else f"{context.trace_id:032x}"


_VERSION_00 = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}")
"""Version 00 of ``traceparent`` as ``parse_traceparent`` reads it (any other: it decides)."""
_NO_TRACE = "0" * 32
_NO_SPAN = "0" * 16

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_FIRST = datetime.min.replace(tzinfo=UTC)
_LAST = datetime.max.replace(tzinfo=UTC)
_MIN_US = micros(_FIRST)
_MAX_US = micros(_LAST)
