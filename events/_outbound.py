"""A record on its way out, and the signature of a send."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiokafka.structs import RecordMetadata

from choreokit.events._envelope import Envelope
from choreokit.events._model import Event

SendFuture = asyncio.Future[RecordMetadata]
"""Resolves to the record's metadata once the broker acknowledged the send."""


@dataclass(frozen=True, slots=True)
class Outbound:
    """One event on its way to Kafka.

    Attributes:
        topic: Destination topic.
        key: Record key: the correlation id, so one flow keeps its order.
        value: The JSON payload.
        envelope: The CloudEvents attributes; headers are built from it at send time.
        event: The event being published.
        headers: Headers sent besides the envelope's (trace propagation fields
            such as ``baggage`` or ``b3``, which the tracing middleware adds).
    """

    topic: str
    key: bytes
    value: bytes
    envelope: Envelope
    event: Event
    headers: tuple[tuple[str, bytes], ...] = ()


Send = Callable[[Outbound], Awaitable[SendFuture]]
