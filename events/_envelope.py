"""The CloudEvents envelope and the Kafka header names of the wire contract."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from choreokit.events._errors import InvalidEnvelopeError

SPECVERSION = "1.0"
JSON = "application/json"
STRUCTURED_JSON = "application/cloudevents+json"
BATCH_JSON = "application/cloudevents-batch+json"

H_CONTENT_TYPE = "content-type"
H_SPECVERSION = "ce_specversion"
H_ID = "ce_id"
H_SOURCE = "ce_source"
H_TYPE = "ce_type"
H_DATAVERSION = "ce_dataversion"
H_TIME = "ce_time"
H_CORRELATION = "ce_correlationid"
H_CAUSATION = "ce_causationid"
H_TRACEPARENT = "traceparent"
H_TRACESTATE = "tracestate"

CE_HEADERS = frozenset(
    {H_SPECVERSION, H_ID, H_SOURCE, H_TYPE, H_DATAVERSION, H_TIME, H_CORRELATION, H_CAUSATION}
)

MAX_ATTRIBUTE_LENGTH = 1024
"""Longest value of any CloudEvents attribute a consumer accepts (characters)."""

MIN_TIME = datetime(1970, 1, 1, tzinfo=UTC)
"""Earliest ``time`` accepted: the Unix epoch (stores keep times as microseconds since it)."""

MAX_TIME = datetime(2200, 1, 1, tzinfo=UTC)
"""First ``time`` no longer accepted: far enough for any real event, far from datetime's end."""

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


def check_attribute(name: str, value: str, *, max_length: int = MAX_ATTRIBUTE_LENGTH) -> str:
    """Return ``value`` if it may be the CloudEvents attribute ``name``.

    Every consumer and the gateway check attributes here, so what one admits,
    all admit: at most ``max_length`` characters, no control characters, no
    surrogates, and none of the invisible format characters (bidi overrides,
    zero-width spaces...) that make a value read as something it is not.

    Raises:
        InvalidEnvelopeError: The value is too long or holds a forbidden character.
    """
    if len(value) > max_length:
        raise InvalidEnvelopeError(name, f"is longer than {max_length} characters")
    found = _FORBIDDEN.search(value)
    if found is not None:
        raise InvalidEnvelopeError(
            name,
            f"contains control characters or invisible format characters (U+"
            f"{ord(found.group()):04X} at position {found.start()}); send printable text only",
        )
    return value


def check_time(name: str, value: datetime) -> datetime:
    """Return ``value`` if it may be an event's ``time``: aware, within 1970..2199.

    Raises:
        InvalidEnvelopeError: No UTC offset, or outside :data:`MIN_TIME` .. :data:`MAX_TIME`.
    """
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidEnvelopeError(name, "must include a UTC offset (RFC 3339)")
    if not MIN_TIME <= value < MAX_TIME:
        raise InvalidEnvelopeError(
            name,
            f"is {value.isoformat()[:40]}, outside the accepted years 1970 to 2199; "
            "send the time the event happened",
        )
    return value


def parse_time(name: str, raw: str) -> datetime:
    """Parse an RFC 3339 ``time`` and check it with :func:`check_time`.

    Raises:
        InvalidEnvelopeError: Not a timestamp, no offset, or out of range.
    """
    check_attribute(name, raw)
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        raise InvalidEnvelopeError(name, f"is not an RFC 3339 timestamp: {raw[:64]!r}") from None
    return check_time(name, parsed)


@dataclass(frozen=True, slots=True)
class Envelope:
    """The CloudEvents attributes of one event (everything but the payload).

    Attributes:
        id: Producer-assigned unique id; the deduplication key.
        source: URI-reference of the producing service, e.g. ``/services/orders``.
        type: Event type without version, e.g. ``order.placed``.
        dataversion: Major version of the payload schema.
        time: When the event happened (timezone-aware).
        correlation_id: The flow (saga) id shared by every event of one flow.
        causation_id: ``id`` of the event whose handling produced this one;
            ``None`` for the event that started the flow.
        traceparent: W3C trace context of the producing span, if any.
        tracestate: W3C trace state accompanying ``traceparent``.
    """

    id: str
    source: str
    type: str
    dataversion: int
    time: datetime
    correlation_id: str
    causation_id: str | None = None
    traceparent: str | None = None
    tracestate: str | None = None

    def with_trace(self, traceparent: str | None, tracestate: str | None) -> Envelope:
        """Return a copy carrying another trace context."""
        # Called once per traced publish: the constructor is several times faster than replace().
        return Envelope(
            self.id,
            self.source,
            self.type,
            self.dataversion,
            self.time,
            self.correlation_id,
            self.causation_id,
            traceparent,
            tracestate,
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the attributes as JSON-ready values (``time`` in RFC 3339)."""
        return {
            "id": self.id,
            "source": self.source,
            "type": self.type,
            "dataversion": self.dataversion,
            "time": self.time.isoformat(),
            "correlation_id": self.correlation_id,
            "causation_id": self.causation_id,
            "traceparent": self.traceparent,
            "tracestate": self.tracestate,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Envelope:
        """Rebuild an envelope from :meth:`to_dict`'s output."""
        return cls(
            id=data["id"],
            source=data["source"],
            type=data["type"],
            dataversion=int(data["dataversion"]),
            time=datetime.fromisoformat(data["time"]),
            correlation_id=data["correlation_id"],
            causation_id=data.get("causation_id"),
            traceparent=data.get("traceparent"),
            tracestate=data.get("tracestate"),
        )
