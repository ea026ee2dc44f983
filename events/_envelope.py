"""The CloudEvents envelope and the Kafka header names of the wire contract."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

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
H_JOINED = "ce_joined"
"""The ``joined`` extension: the other inputs' ids of a join's output (comma-separated)."""

CE_HEADERS = frozenset(
    {
        H_SPECVERSION,
        H_ID,
        H_SOURCE,
        H_TYPE,
        H_DATAVERSION,
        H_TIME,
        H_CORRELATION,
        H_CAUSATION,
        H_JOINED,
    }
)


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
        joined: For the output of a join (:class:`~choreokit.events.sql.Join`), the
            ids of the inputs it joined besides its cause, comma-separated (the
            CloudEvents extension ``joined``, header ``ce_joined``).
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
    joined: str | None = None

    @property
    def joined_ids(self) -> tuple[str, ...]:
        """The ids in :attr:`joined` (empty unless the event is a join's output)."""
        return tuple(self.joined.split(",")) if self.joined else ()

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
            self.joined,
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
            "joined": self.joined,
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
            joined=data.get("joined"),
        )
