"""Dead-letter records: the original bytes and headers, plus what went wrong and where.

Also the headers of a replay (a dead letter sent back to its topic for one
consumer group) and the name of the audit topic where replays, purges and
their outcomes are recorded.
"""

from __future__ import annotations

import json
import traceback
from datetime import UTC, datetime

DLQ_SUFFIX = ".dlq"
HEADER_PREFIX = "choreo_dlq_"
H_ERROR_TYPE = "choreo_dlq_error_type"
H_ERROR_MESSAGE = "choreo_dlq_error_message"
H_ERROR_CHAIN = "choreo_dlq_error_chain"
H_ERROR_FRAME = "choreo_dlq_error_frame"
H_TRACEBACK = "choreo_dlq_traceback"
H_ORIGINAL_TOPIC = "choreo_dlq_original_topic"
H_ORIGINAL_PARTITION = "choreo_dlq_original_partition"
H_ORIGINAL_OFFSET = "choreo_dlq_original_offset"
H_ORIGINAL_TIMESTAMP = "choreo_dlq_original_timestamp"
H_CONSUMER_GROUP = "choreo_dlq_consumer_group"
H_ATTEMPTS = "choreo_dlq_attempts"
H_FAILED_AT = "choreo_dlq_failed_at"

REPLAY_PREFIX = "choreo_replay_"
H_REPLAY_GROUP = "choreo_replay_group"
"""The one consumer group a replayed record is for; every other group skips it."""
H_REPLAY_ID = "choreo_replay_id"
"""The id of the replay (its audit record's), echoed by the consumer's outcome record."""
H_REPLAY_OF = "choreo_replay_of"
"""The dead letter replayed, as ``<dlq topic>/<partition>/<offset>``."""

AUDIT_TOPIC = "choreo.dlq.audit"
"""Where replays, purges and replay outcomes are recorded (JSON values, keyed by dead letter)."""

MAX_MESSAGE_BYTES = 4096
MAX_CHAIN_BYTES = 4096
MAX_TRACEBACK_BYTES = 8192
MAX_CHAIN_LINKS = 8
TRACEBACK_FRAMES = 8
_MAX_LINE = 512


def dead_letter_topic(topic: str) -> str:
    """Return the dead-letter topic of ``topic``."""
    return topic + DLQ_SUFFIX


def is_dead_letter_topic(topic: str) -> bool:
    """Return whether ``topic`` is a dead-letter topic."""
    return topic.endswith(DLQ_SUFFIX)


def error_chain(error: BaseException) -> list[dict[str, str]]:
    """Return ``error`` and its causes (``__cause__``, else ``__context__``), outermost first.

    Each link is ``{"type", "message", "link"}`` where ``link`` says how the next
    one relates (``cause``, ``context`` or ``""`` for the last); at most
    :data:`MAX_CHAIN_LINKS` links, and a cycle ends the chain.
    """
    chain: list[dict[str, str]] = []
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen and len(chain) < MAX_CHAIN_LINKS:
        seen.add(id(current))
        nxt: BaseException | None
        if current.__cause__ is not None:
            nxt, link = current.__cause__, "cause"
        elif current.__context__ is not None and not current.__suppress_context__:
            nxt, link = current.__context__, "context"
        else:
            nxt, link = None, ""
        chain.append(
            {
                "type": _qualified(current),
                "message": str(current)[:512],
                "link": link,
            }
        )
        current = nxt
    return chain


def top_frame(error: BaseException) -> str:
    """Return ``module-file:function`` of the innermost frame that raised ``error`` (or ``""``)."""
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return ""
    last = frames[-1]
    return f"{_short_path(last.filename)}:{last.name}"


def last_frames(error: BaseException) -> str:
    """Return the last :data:`TRACEBACK_FRAMES` frames of each error of the chain, formatted."""
    lines = [
        line if len(line) <= _MAX_LINE else line[: _MAX_LINE - 4] + "...\n"
        for chunk in traceback.format_exception(error, limit=-TRACEBACK_FRAMES)
        for line in chunk.splitlines(keepends=True)
    ]
    text = "".join(lines)
    encoded = text.encode("utf-8", "replace")
    if len(encoded) > MAX_TRACEBACK_BYTES:
        # Keep the end: the innermost frames and the final error say the most.
        encoded = b"...\n" + encoded[-(MAX_TRACEBACK_BYTES - 4) :]
    return encoded.decode("utf-8", "replace")


def dead_letter_headers(
    original: tuple[tuple[str, bytes | None], ...],
    *,
    error: BaseException,
    topic: str,
    partition: int,
    offset: int,
    timestamp_ms: int,
    group: str,
    attempts: int,
) -> list[tuple[str, bytes]]:
    """Return the original headers (minus earlier failure and replay headers) and the error's."""
    headers = [
        (key, value if value is not None else b"")
        for key, value in original
        if not key.startswith((HEADER_PREFIX, REPLAY_PREFIX))
    ]
    message = str(error).encode("utf-8", "replace")[:MAX_MESSAGE_BYTES]
    chain = error_chain(error)
    encoded_chain = json.dumps(chain).encode()
    while len(encoded_chain) > MAX_CHAIN_BYTES and len(chain) > 1:
        chain = chain[:-1]
        encoded_chain = json.dumps(chain).encode()
    headers += [
        (H_ERROR_TYPE, type(error).__name__.encode()),
        (H_ERROR_MESSAGE, message),
        (H_ERROR_CHAIN, encoded_chain[:MAX_CHAIN_BYTES]),
        (H_ERROR_FRAME, top_frame(error).encode()),
        (H_TRACEBACK, last_frames(error).encode()),
        (H_ORIGINAL_TOPIC, topic.encode()),
        (H_ORIGINAL_PARTITION, str(partition).encode()),
        (H_ORIGINAL_OFFSET, str(offset).encode()),
        (H_ORIGINAL_TIMESTAMP, str(timestamp_ms).encode()),
        (H_CONSUMER_GROUP, group.encode()),
        (H_ATTEMPTS, str(attempts).encode()),
        (H_FAILED_AT, datetime.now(UTC).isoformat().encode()),
    ]
    return headers


def _qualified(error: BaseException) -> str:
    cls = type(error)
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def _short_path(filename: str) -> str:
    # The last two path parts name the module without the machine's install location.
    parts = filename.replace("\\", "/").rsplit("/", 2)
    return "/".join(parts[-2:])
