"""The checks every CloudEvents attribute passes, wherever an event comes in (Kafka or HTTP)."""

from __future__ import annotations

import re
from datetime import datetime

MAX_ATTRIBUTE_LENGTH = 1024
"""Longest value of a CloudEvents attribute that consumers accept."""

_VERSION = re.compile(r"^[1-9][0-9]{0,8}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # excluded from CloudEvents strings


def attribute_problem(value: str, *, max_length: int = MAX_ATTRIBUTE_LENGTH) -> str | None:
    """What is wrong with a CloudEvents string attribute's value (``None`` if nothing).

    The answer completes a sentence about the attribute: ``"is longer than 1024
    characters"``, ``"contains control characters"``.
    """
    if len(value) > max_length:
        return f"is longer than {max_length} characters"
    if _CONTROL.search(value):
        return "contains control characters"
    return None


def is_dataversion(value: str) -> bool:
    """Whether ``value`` is a ``dataversion``: a positive decimal integer without sign or zeros."""
    return _VERSION.match(value) is not None


def parse_event_time(value: str) -> datetime:
    """Read a CloudEvents ``time``: an RFC 3339 timestamp with its UTC offset.

    Raises:
        ValueError: It is not one; the message completes a sentence about the
            attribute (``"must include a UTC offset (RFC 3339)"``).
    """
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"is not an RFC 3339 timestamp: {value[:64]!r}") from None
    if parsed.tzinfo is None:
        raise ValueError("must include a UTC offset (RFC 3339)")
    return parsed
