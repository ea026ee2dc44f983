"""The dedup window: event ids the gateway accepted recently, so a retry is not published twice.

The window lives in the gateway's memory. It covers retries that reach the
same gateway process within ``CHOREO_GATEWAY_DEDUP_WINDOW``; a retry that
reaches another replica, or arrives after a restart, is published again with
the same ``ce_id``, and consumers drop it by id (their inbox). The window
spares them that work and answers the client with the first attempt's outcome.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from enum import Enum


@dataclass(frozen=True, slots=True)
class Receipt:
    """What the gateway did with an accepted event.

    Attributes:
        id: The event's ``ce_id`` on Kafka.
        received_id: The ``id`` the caller sent.
        correlation_id: The flow it joined or started (``ce_correlationid``).
        topic: Where it was published.
        partition: Partition it landed on.
        offset: Its offset there.
        duplicate: Whether this answer repeats an earlier publication of the same event.
    """

    id: str
    received_id: str
    correlation_id: str
    topic: str
    partition: int
    offset: int
    duplicate: bool = False


class Seen(Enum):
    """What the window knows of an event id."""

    NEW = "new"
    """Never seen (or forgotten): the caller now owns the id until it commits or releases."""

    IN_FLIGHT = "in flight"
    """Another request is publishing the same event right now."""

    DONE = "done"
    """Published before, with the same content."""

    CONFLICT = "conflict"
    """Seen before with different content."""


@dataclass(slots=True)
class _Entry:
    fingerprint: bytes
    expires: float
    receipt: Receipt | None
    settled: asyncio.Event | None = None
    """Made only when another request waits for this one (rare): most claims never need it."""


class DedupWindow:
    """Remembers accepted event ids for a while, bounded in time and in number."""

    def __init__(
        self, window: timedelta, capacity: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._window = window.total_seconds()
        self._capacity = capacity
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def claim(self, event_id: str, fingerprint: bytes) -> tuple[Seen, Receipt | None]:
        """Look ``event_id`` up and, if new, reserve it for the caller.

        Returns:
            What is known, and the earlier receipt when it is ``DONE``.
        """
        self._expire()
        entry = self._entries.get(event_id)
        if entry is None:
            self._entries[event_id] = _Entry(fingerprint, self._clock() + self._window, None)
            while len(self._entries) > self._capacity:
                self._entries.popitem(last=False)
            return Seen.NEW, None
        if entry.fingerprint != fingerprint:
            return Seen.CONFLICT, None
        if entry.receipt is None:
            return Seen.IN_FLIGHT, None
        return Seen.DONE, entry.receipt

    async def settled(self, event_id: str) -> None:
        """Wait until the request holding ``event_id`` commits or releases it."""
        entry = self._entries.get(event_id)
        if entry is not None and entry.receipt is None:
            if entry.settled is None:
                entry.settled = asyncio.Event()
            await entry.settled.wait()

    def commit(self, event_id: str, receipt: Receipt) -> None:
        """Record that ``event_id`` was published (acknowledged by the broker)."""
        entry = self._entries.get(event_id)
        if entry is not None:
            entry.receipt = receipt
            if entry.settled is not None:
                entry.settled.set()

    def release(self, event_id: str) -> None:
        """Forget a claim whose publication failed, so a retry publishes it."""
        entry = self._entries.get(event_id)
        if entry is not None and entry.receipt is None:
            del self._entries[event_id]
            if entry.settled is not None:
                entry.settled.set()

    def _expire(self) -> None:
        now = self._clock()
        while self._entries:
            event_id, entry = next(iter(self._entries.items()))
            if entry.expires > now:
                break
            if entry.receipt is None:
                # Still in flight: it will settle; keep it at the back of the line.
                self._entries.move_to_end(event_id)
                entry.expires = now + self._window
                continue
            del self._entries[event_id]
