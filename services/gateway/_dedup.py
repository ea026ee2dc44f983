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


_Stored = tuple[str, str, str, str, int, int]
"""A receipt as the window keeps it: its fields but ``duplicate``, in order."""

_Entry = tuple[bytes, float, _Stored | None]
"""``(fingerprint, expires, receipt)``: what the window keeps per id.

Plain tuples of strings and numbers, because the cyclic garbage collector
stops tracking an exact tuple whose items are all atoms: a full window
(100,000 ids) then adds nothing to the work of each full collection. As
dataclasses, two tracked objects per id made every full collection of a busy
gateway walk 200,000 more objects: 40 to 90 ms each, every half second under
a batch load, which was the batch scenario's p99."""


class DedupWindow:
    """Remembers accepted event ids for a while, bounded in time and in number."""

    def __init__(
        self, window: timedelta, capacity: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._window = window.total_seconds()
        self._capacity = capacity
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._waiters: dict[str, asyncio.Event] = {}
        """Made only when another request waits for an id in flight (rare)."""

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
            self._entries[event_id] = (fingerprint, self._clock() + self._window, None)
            while len(self._entries) > self._capacity:
                self._entries.popitem(last=False)
            return Seen.NEW, None
        known, _expires, receipt = entry
        if known != fingerprint:
            return Seen.CONFLICT, None
        if receipt is None:
            return Seen.IN_FLIGHT, None
        return Seen.DONE, Receipt(*receipt)

    async def settled(self, event_id: str) -> None:
        """Wait until the request holding ``event_id`` commits or releases it."""
        entry = self._entries.get(event_id)
        if entry is not None and entry[2] is None:
            waiter = self._waiters.get(event_id)
            if waiter is None:
                waiter = self._waiters[event_id] = asyncio.Event()
            await waiter.wait()

    def commit(self, event_id: str, receipt: Receipt) -> None:
        """Record that ``event_id`` was published (acknowledged by the broker)."""
        entry = self._entries.get(event_id)
        if entry is not None:
            stored: _Stored = (
                receipt.id,
                receipt.received_id,
                receipt.correlation_id,
                receipt.topic,
                receipt.partition,
                receipt.offset,
            )
            self._entries[event_id] = (entry[0], entry[1], stored)
            self._wake(event_id)

    def release(self, event_id: str) -> None:
        """Forget a claim whose publication failed, so a retry publishes it."""
        entry = self._entries.get(event_id)
        if entry is not None and entry[2] is None:
            del self._entries[event_id]
            self._wake(event_id)

    def _wake(self, event_id: str) -> None:
        if self._waiters:
            waiter = self._waiters.pop(event_id, None)
            if waiter is not None:
                waiter.set()

    def _expire(self) -> None:
        now = self._clock()
        entries = self._entries
        while entries:
            event_id, (fingerprint, expires, receipt) = next(iter(entries.items()))
            if expires > now:
                break
            if receipt is None:
                # Still in flight: it will settle; keep it at the back of the line.
                entries[event_id] = (fingerprint, now + self._window, None)
                entries.move_to_end(event_id)
                continue
            del entries[event_id]
