"""Dead-letter records: the original bytes and headers, plus what went wrong and where."""

from __future__ import annotations

from datetime import UTC, datetime

DLQ_SUFFIX = ".dlq"
HEADER_PREFIX = "choreo_dlq_"
H_ERROR_TYPE = "choreo_dlq_error_type"
H_ERROR_MESSAGE = "choreo_dlq_error_message"
H_ORIGINAL_TOPIC = "choreo_dlq_original_topic"
H_ORIGINAL_PARTITION = "choreo_dlq_original_partition"
H_ORIGINAL_OFFSET = "choreo_dlq_original_offset"
H_ORIGINAL_TIMESTAMP = "choreo_dlq_original_timestamp"
H_CONSUMER_GROUP = "choreo_dlq_consumer_group"
H_ATTEMPTS = "choreo_dlq_attempts"
H_FAILED_AT = "choreo_dlq_failed_at"

MAX_MESSAGE_BYTES = 4096


def dead_letter_topic(topic: str) -> str:
    """Return the dead-letter topic of ``topic``."""
    return topic + DLQ_SUFFIX


def is_dead_letter_topic(topic: str) -> bool:
    """Return whether ``topic`` is a dead-letter topic."""
    return topic.endswith(DLQ_SUFFIX)


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
    """Return the original headers (minus an earlier failure's) and the error headers."""
    headers = [
        (key, value if value is not None else b"")
        for key, value in original
        if not key.startswith(HEADER_PREFIX)
    ]
    message = str(error).encode("utf-8", "replace")[:MAX_MESSAGE_BYTES]
    headers += [
        (H_ERROR_TYPE, type(error).__name__.encode()),
        (H_ERROR_MESSAGE, message),
        (H_ORIGINAL_TOPIC, topic.encode()),
        (H_ORIGINAL_PARTITION, str(partition).encode()),
        (H_ORIGINAL_OFFSET, str(offset).encode()),
        (H_ORIGINAL_TIMESTAMP, str(timestamp_ms).encode()),
        (H_CONSUMER_GROUP, group.encode()),
        (H_ATTEMPTS, str(attempts).encode()),
        (H_FAILED_AT, datetime.now(UTC).isoformat().encode()),
    ]
    return headers
