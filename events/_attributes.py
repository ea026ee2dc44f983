"""The checks every CloudEvents attribute passes, wherever an event comes in (Kafka or HTTP).

One set of rules for every consumer and the gateway, so what one admits, all admit:
string attributes of at most :data:`MAX_ATTRIBUTE_LENGTH` characters with no control
characters, surrogates or invisible format characters; ``dataversion`` a positive
decimal; ``time`` an RFC 3339 timestamp with an offset, within :data:`MIN_TIME` ..
:data:`MAX_TIME`.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from choreokit.events._errors import InvalidEnvelopeError

MAX_ATTRIBUTE_LENGTH = 1024
"""Longest value of any CloudEvents attribute a consumer accepts (characters)."""

MIN_TIME = datetime(1970, 1, 1, tzinfo=UTC)
"""Earliest ``time`` accepted: the Unix epoch (stores keep times as microseconds since it)."""

MAX_TIME = datetime(2200, 1, 1, tzinfo=UTC)
"""First ``time`` no longer accepted: far enough for any real event, far from datetime's end."""

_VERSION = re.compile(r"^[1-9][0-9]{0,8}$")

# Every character of the Unicode categories Cc (C0 and C1 controls, excluded from
# CloudEvents strings), Cf (invisible format characters that change how text reads:
# bidi embeddings, overrides and isolates, zero-width characters, the byte-order mark,
# tags), Cs (surrogates: a JSON escape can carry a lone one, which no header can
# encode), Zl and Zp (line and paragraph separators); generated from unicodedata.
_FORBIDDEN = re.compile(
    "[\\x00-\\x1f\\x7f-\\x9f\\xad\\u0600-\\u0605\\u061c\\u06dd\\u070f\\u0890-\\u0891"
    "\\u08e2\\u180e\\u200b-\\u200f\\u2028-\\u202e\\u2060-\\u2064\\u2066-\\u206f"
    "\\ud800-\\udfff\\ufeff\\ufff9-\\ufffb\\U000110bd\\U000110cd\\U00013430-\\U00013438"
    "\\U0001bca0-\\U0001bca3\\U0001d173-\\U0001d17a\\U000e0001\\U000e0020-\\U000e007f]"
)


def attribute_problem(value: str, *, max_length: int = MAX_ATTRIBUTE_LENGTH) -> str | None:
    """What is wrong with a CloudEvents string attribute's value (``None`` if nothing).

    The answer completes a sentence about the attribute: ``"is longer than 1024
    characters"``, ``"contains control characters or invisible format characters ..."``.
    """
    if len(value) > max_length:
        return f"is longer than {max_length} characters"
    if value.isascii() and value.isprintable():
        return None  # the common case, without the search: no forbidden character is both
    found = _FORBIDDEN.search(value)
    if found is not None:
        return (
            f"contains control characters or invisible format characters (U+"
            f"{ord(found.group()):04X} at position {found.start()}); send printable text only"
        )
    return None


def check_attribute(name: str, value: str, *, max_length: int = MAX_ATTRIBUTE_LENGTH) -> str:
    """Return ``value`` if it may be the CloudEvents attribute ``name``.

    Raises:
        InvalidEnvelopeError: The value is too long or holds a forbidden character.
    """
    problem = attribute_problem(value, max_length=max_length)
    if problem is not None:
        raise InvalidEnvelopeError(name, problem)
    return value


def is_dataversion(value: str) -> bool:
    """Whether ``value`` is a ``dataversion``: a positive decimal integer without sign or zeros."""
    return _VERSION.match(value) is not None


def time_problem(value: datetime) -> str | None:
    """What is wrong with an event's ``time`` (``None`` if nothing): no offset, or out of range."""
    if value.tzinfo is None or value.utcoffset() is None:
        return "must include a UTC offset (RFC 3339)"
    if not MIN_TIME <= value < MAX_TIME:
        return (
            f"is {value.isoformat()[:40]}, outside the accepted years 1970 to 2199; "
            "send the time the event happened"
        )
    return None


def check_time(name: str, value: datetime) -> datetime:
    """Return ``value`` if it may be an event's ``time``: aware, within 1970..2199.

    Raises:
        InvalidEnvelopeError: No UTC offset, or outside :data:`MIN_TIME` .. :data:`MAX_TIME`.
    """
    problem = time_problem(value)
    if problem is not None:
        raise InvalidEnvelopeError(name, problem)
    return value


def parse_event_time(value: str) -> datetime:
    """Read a CloudEvents ``time``: an RFC 3339 timestamp with its UTC offset, in range.

    Raises:
        ValueError: It is not one; the message completes a sentence about the attribute.
    """
    problem = attribute_problem(value)
    if problem is not None:
        raise ValueError(problem)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"is not an RFC 3339 timestamp: {value[:64]!r}") from None
    problem = time_problem(parsed)
    if problem is not None:
        raise ValueError(problem)
    return parsed


def parse_time(name: str, raw: str) -> datetime:
    """Parse an RFC 3339 ``time`` and check it, for the attribute ``name``.

    Raises:
        InvalidEnvelopeError: Not a timestamp, no offset, or out of range.
    """
    try:
        return parse_event_time(raw)
    except ValueError as exc:
        raise InvalidEnvelopeError(name, str(exc)) from None
