"""Dead letters as the operator sees them: what failed, where, why, and its fingerprint."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from hashlib import sha256
from typing import Any

from aiokafka import ConsumerRecord

from choreokit.events._codec import decode, header_value, record_time
from choreokit.events._dead_letter import (
    H_ATTEMPTS,
    H_CONSUMER_GROUP,
    H_ERROR_CHAIN,
    H_ERROR_FRAME,
    H_ERROR_MESSAGE,
    H_ERROR_TYPE,
    H_FAILED_AT,
    H_ORIGINAL_OFFSET,
    H_ORIGINAL_PARTITION,
    H_ORIGINAL_TOPIC,
    H_TRACEBACK,
    HEADER_PREFIX,
)
from choreokit.events._envelope import H_CORRELATION, H_ID, H_TYPE
from choreokit.events._errors import ChoreoError

_NOISE = (
    (
        re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"),
        "<uuid>",
    ),
    (re.compile(r"'[^']*'|\"[^\"]*\""), "<str>"),
    (re.compile(r"\b0x[0-9a-fA-F]+\b|\b[0-9a-fA-F]{12,}\b"), "<hex>"),
    (re.compile(r"\d+(?:\.\d+)?"), "<n>"),
    (re.compile(r"\s+"), " "),
)


def normalise_message(message: str) -> str:
    """Return ``message`` with ids, quoted values and numbers replaced by placeholders.

    Two failures that differ only in the order, flow or amount they name get
    the same text, so they fall into one failure group.
    """
    text = message[:1024]
    for pattern, placeholder in _NOISE:
        text = pattern.sub(placeholder, text)
    return text.strip()


def fingerprint(error_type: str, message: str, frame: str) -> str:
    """Return the failure group of an error: its type, normalised message and top frame."""
    basis = "\x1f".join((error_type, normalise_message(message), frame))
    return sha256(basis.encode()).hexdigest()[:16]


class Status(StrEnum):
    """Where a dead letter stands."""

    DEAD = "dead"
    """Nobody acted on it yet."""

    REPLAYED = "replayed"
    """Sent back to its group; the outcome is not known yet."""

    RESOLVED = "resolved"
    """Replayed, and the group handled it."""

    FAILED = "failed"
    """Replayed, and the group failed on it again (a new dead letter holds it)."""

    PURGED = "purged"
    """Marked as dealt with without a replay; hidden unless asked for."""


@dataclass(frozen=True, slots=True)
class Replay:
    """One replay of a dead letter, as the audit topic records it."""

    replay_id: str
    operator: str
    at: datetime
    topic: str
    group: str | None
    edited: bool
    result: str
    """``sent``, then ``handled`` or ``failed`` once the group reports."""
    error: str | None = None


@dataclass(slots=True)
class DeadLetter:
    """A record a consumer group gave up on, read from a ``*.dlq`` topic.

    Attributes:
        id: ``<dlq topic>/<partition>/<offset>``: where the dead letter is; the
            handle every command takes.
        topic: The dead-letter topic.
        partition: Its partition there.
        offset: Its offset there.
        key: The original key.
        value: The original value, byte for byte.
        headers: The original headers (without the dead-letter ones).
        error_type: The error's class name.
        error_message: What went wrong (at most 4 KiB).
        error_chain: The error and its causes, outermost first.
        error_frame: ``file:function`` where the error was raised.
        traceback: The last frames (at most 8 KiB).
        original_topic: Where the record was read from.
        original_partition: Its partition there.
        original_offset: Its offset there.
        group: The consumer group that failed on it.
        attempts: How many times the handler ran (0: it never reached one).
        failed_at: When it was dead-lettered.
        event_type: Its ``ce_type`` (``None`` if unreadable).
        event_id: Its ``ce_id``.
        correlation_id: Its flow.
        fingerprint: Its failure group.
        status: Where it stands, from the audit topic.
        replays: Its replays, oldest first.
        purged_by: Who purged it, and why (``None`` if not purged).
    """

    id: str
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    error_type: str
    error_message: str
    error_chain: list[dict[str, str]]
    error_frame: str
    traceback: str
    original_topic: str | None
    original_partition: int | None
    original_offset: int | None
    group: str | None
    attempts: int | None
    failed_at: datetime
    event_type: str | None
    event_id: str | None
    correlation_id: str | None
    fingerprint: str
    status: Status = Status.DEAD
    replays: list[Replay] = field(default_factory=list)
    purged_by: str | None = None

    def to_json(self, *, full: bool = False) -> dict[str, Any]:
        """Return the dead letter as JSON-ready values (``full``: payload, headers, traceback)."""
        out: dict[str, Any] = {
            "id": self.id,
            "status": self.status.value,
            "group": self.group,
            "original": {
                "topic": self.original_topic,
                "partition": self.original_partition,
                "offset": self.original_offset,
            },
            "event_type": self.event_type,
            "event_id": self.event_id,
            "correlation_id": self.correlation_id,
            "error_type": self.error_type,
            "error_message": self.error_message,
            "error_frame": self.error_frame,
            "fingerprint": self.fingerprint,
            "attempts": self.attempts,
            "failed_at": self.failed_at.isoformat(),
            "replays": [
                {
                    "replay_id": r.replay_id,
                    "operator": r.operator,
                    "at": r.at.isoformat(),
                    "topic": r.topic,
                    "group": r.group,
                    "edited": r.edited,
                    "result": r.result,
                    "error": r.error,
                }
                for r in self.replays
            ],
            "purged_by": self.purged_by,
        }
        if full:
            out["error_chain"] = self.error_chain
            out["traceback"] = self.traceback
            out["key"] = _text(self.key)
            out["data"] = _payload(self.value)
            out["headers"] = {k: _text(v) for k, v in self.headers}
        return out


def parse(record: ConsumerRecord[bytes, bytes]) -> DeadLetter:
    """Read a dead letter from its ``*.dlq`` record, never raising on odd headers."""
    headers = [(k, v if v is not None else b"") for k, v in record.headers]
    original = [(k, v) for k, v in headers if not k.startswith(HEADER_PREFIX)]
    try:
        envelope = decode(
            original, record.value, fallback_time=record_time(record.timestamp)
        ).envelope
    except ChoreoError:
        envelope = None
    error_type = header_value(headers, H_ERROR_TYPE) or "unknown"
    message = header_value(headers, H_ERROR_MESSAGE) or ""
    frame = header_value(headers, H_ERROR_FRAME) or ""
    try:
        chain = json.loads(header_value(headers, H_ERROR_CHAIN) or "[]")
    except ValueError:
        chain = []
    return DeadLetter(
        id=f"{record.topic}/{record.partition}/{record.offset}",
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        value=record.value,
        headers=original,
        error_type=error_type,
        error_message=message,
        error_chain=chain if isinstance(chain, list) else [],
        error_frame=frame,
        traceback=header_value(headers, H_TRACEBACK) or "",
        original_topic=header_value(headers, H_ORIGINAL_TOPIC),
        original_partition=_int(header_value(headers, H_ORIGINAL_PARTITION)),
        original_offset=_int(header_value(headers, H_ORIGINAL_OFFSET)),
        group=header_value(headers, H_CONSUMER_GROUP),
        attempts=_int(header_value(headers, H_ATTEMPTS)),
        failed_at=_time(header_value(headers, H_FAILED_AT)) or record_time(record.timestamp),
        event_type=envelope.type if envelope else header_value(headers, H_TYPE),
        event_id=envelope.id if envelope else header_value(headers, H_ID),
        correlation_id=envelope.correlation_id
        if envelope
        else header_value(headers, H_CORRELATION),
        fingerprint=fingerprint(error_type, message, frame),
    )


@dataclass(frozen=True, slots=True)
class DeadLetterFilter:
    """Which dead letters an operation applies to; unset fields match everything.

    Attributes:
        topic: The original topic (or its ``.dlq``).
        group: The consumer group that failed.
        error_type: The error's class name.
        event_type: The event's ``ce_type``.
        correlation_id: The flow.
        fingerprint: The failure group.
        since: Dead-lettered at or after.
        until: Dead-lettered before.
        include_purged: Purged dead letters match too.
        statuses: Only these statuses (empty: any but purged, unless included).
    """

    topic: str | None = None
    group: str | None = None
    error_type: str | None = None
    event_type: str | None = None
    correlation_id: str | None = None
    fingerprint: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    include_purged: bool = False
    statuses: frozenset[Status] = frozenset()

    def matches(self, letter: DeadLetter) -> bool:
        """Whether ``letter`` passes every criterion set."""
        checks = (
            self.topic is None or self.topic in (letter.original_topic, letter.topic),
            self.group is None or self.group == letter.group,
            self.error_type is None or self.error_type == letter.error_type,
            self.event_type is None or self.event_type == letter.event_type,
            self.correlation_id is None or self.correlation_id == letter.correlation_id,
            self.fingerprint is None or letter.fingerprint.startswith(self.fingerprint),
            self.since is None or letter.failed_at >= self.since,
            self.until is None or letter.failed_at < self.until,
            not self.statuses or letter.status in self.statuses,
            self.include_purged
            or letter.status is not Status.PURGED
            or Status.PURGED in self.statuses,
        )
        return all(checks)


@dataclass(slots=True)
class FailureGroup:
    """Dead letters that failed the same way (same fingerprint)."""

    fingerprint: str
    error_type: str
    message: str
    """The normalised message."""
    frame: str
    count: int
    first_seen: datetime
    last_seen: datetime
    groups: set[str]
    topics: set[str]
    sample: str
    """The id of the newest dead letter of the group."""

    def to_json(self) -> dict[str, Any]:
        """Return the group as JSON-ready values."""
        return {
            "fingerprint": self.fingerprint,
            "error_type": self.error_type,
            "message": self.message,
            "frame": self.frame,
            "count": self.count,
            "first_seen": self.first_seen.isoformat(),
            "last_seen": self.last_seen.isoformat(),
            "groups": sorted(self.groups),
            "topics": sorted(self.topics),
            "sample": self.sample,
        }


def failure_groups(letters: list[DeadLetter]) -> list[FailureGroup]:
    """Group ``letters`` by fingerprint, largest group first."""
    groups: dict[str, FailureGroup] = {}
    for letter in letters:
        group = groups.get(letter.fingerprint)
        if group is None:
            groups[letter.fingerprint] = FailureGroup(
                fingerprint=letter.fingerprint,
                error_type=letter.error_type,
                message=normalise_message(letter.error_message),
                frame=letter.error_frame,
                count=1,
                first_seen=letter.failed_at,
                last_seen=letter.failed_at,
                groups={letter.group} if letter.group else set(),
                topics={letter.original_topic or letter.topic},
                sample=letter.id,
            )
            continue
        group.count += 1
        group.first_seen = min(group.first_seen, letter.failed_at)
        if letter.failed_at >= group.last_seen:
            group.last_seen, group.sample = letter.failed_at, letter.id
        if letter.group:
            group.groups.add(letter.group)
        group.topics.add(letter.original_topic or letter.topic)
    return sorted(groups.values(), key=lambda g: (-g.count, g.fingerprint))


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _text(value: bytes | None) -> str | None:
    return value.decode("utf-8", "backslashreplace") if value is not None else None


def _payload(value: bytes | None) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except ValueError:
        return value[:4096].decode("utf-8", "backslashreplace")
