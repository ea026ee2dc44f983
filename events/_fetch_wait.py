"""A consumer's fetch wait: short while records flow, longer while it is idle.

Each fetch a consumer sends tells the broker how long it may hold the request
when there is nothing to return (``fetch.max.wait.ms``). Apache Kafka answers
as soon as a record arrives, so there a long wait costs nothing; the embedded
broker (Tansu) looks for records at the start of the wait and then again only
at its halves (``W/2``, ``3W/4``, ... while at least 250 ms remain, then at the
end), so a short wait is what keeps its hops quick, and a short wait means an
idle consumer fetches many times a second. :class:`FetchWait` keeps the short
wait while records come and, once none has come for a while, lengthens it
step by step (doubling) up to a ceiling; the first record brings it back.

aiokafka reads the wait from its fetcher each time it builds a fetch request,
and offers no public way to change it after the consumer starts: the one
private access lives here (:func:`_fetcher_of`), and
``tests/unit/test_library_seams.py`` fails if aiokafka moves it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from choreokit.events._settings import KafkaSettings, millis

logger = logging.getLogger("choreokit.consumer")

Clock = Callable[[], float]
"""Seconds from an arbitrary start (``time.monotonic``), injectable for tests."""


class FetchWaitPolicy:
    """Which fetch wait a consumer should use next, from what its polls returned.

    Args:
        busy: The wait while records come (``CHOREO_KAFKA_FETCH_MAX_WAIT``).
        idle: The longest wait, reached once the consumer has been idle a while
            (``CHOREO_KAFKA_FETCH_IDLE_WAIT``); no longer than ``busy`` keeps the
            wait at ``busy`` for good.
        idle_after: How long without a record before the wait starts to grow
            (``CHOREO_KAFKA_FETCH_IDLE_AFTER``).
        clock: Where "now" comes from.
    """

    def __init__(
        self,
        *,
        busy: timedelta,
        idle: timedelta,
        idle_after: timedelta,
        clock: Clock = time.monotonic,
    ) -> None:
        self.busy_ms = max(1, millis(busy))
        self.idle_ms = max(self.busy_ms, millis(idle))
        self._idle_after = idle_after.total_seconds()
        self._clock = clock
        self._last_record = clock()
        self.wait_ms = self.busy_ms
        """The wait the consumer's next fetches should carry, in milliseconds."""

    @property
    def adaptive(self) -> bool:
        """Whether the wait ever changes (the idle wait is longer than the busy one)."""
        return self.idle_ms > self.busy_ms

    def polled(self, records: int) -> int:
        """Note a poll that returned ``records`` records; return the wait to use from now on.

        A poll with records brings the wait back to ``busy`` at once. An empty poll
        once no record has come for ``idle_after`` doubles it, up to ``idle``.
        """
        now = self._clock()
        if records:
            self._last_record = now
            self.wait_ms = self.busy_ms
        elif now - self._last_record >= self._idle_after:
            self.wait_ms = min(self.idle_ms, self.wait_ms * 2)
        return self.wait_ms


def _fetcher_of(consumer: Any) -> Any | None:
    """The started consumer's fetcher, if it still keeps its wait where we set it."""
    fetcher = getattr(consumer, "_fetcher", None)
    if fetcher is None or not isinstance(getattr(fetcher, "_fetch_max_wait_ms", None), int):
        return None
    return fetcher


def fetch_wait_of(consumer: Any) -> int | None:
    """The wait (ms) the started aiokafka ``consumer`` puts in its next fetch requests."""
    fetcher = _fetcher_of(consumer)
    return None if fetcher is None else int(fetcher._fetch_max_wait_ms)


class FetchWait:
    """Applies a :class:`FetchWaitPolicy` to a running aiokafka consumer, poll by poll.

    The consumer loop calls :meth:`polled` right after each ``getmany``, before it
    awaits anything else: aiokafka's fetcher builds its next request only once the
    loop yields, so the first record's poll already sends the short wait.

    Args:
        settings: The fetch wait, idle wait and idle delay come from here.
        clock: Where "now" comes from.
    """

    def __init__(self, settings: KafkaSettings, *, clock: Clock = time.monotonic) -> None:
        self.policy = FetchWaitPolicy(
            busy=settings.timing("fetch_max_wait"),
            idle=settings.timing("fetch_idle_wait"),
            idle_after=settings.fetch_idle_after,
            clock=clock,
        )
        self._applied: int | None = None
        self._consumer: Any = None  # the one _applied was set on (a new one starts afresh)
        self._broken = False

    def polled(self, consumer: Any, records: int) -> None:
        """Note what ``consumer``'s poll returned and set the wait of its next fetches."""
        if self._broken or not self.policy.adaptive:
            return
        wait = self.policy.polled(records)
        if wait == self._applied and consumer is self._consumer:
            return
        fetcher = _fetcher_of(consumer)
        if fetcher is None:
            if getattr(consumer, "_fetcher", None) is None:
                return  # not started yet
            self._broken = True
            logger.warning(
                "this aiokafka keeps no fetch wait where choreokit sets it; the fetch wait "
                "stays at %d ms (idle consumers fetch as often as busy ones)",
                self.policy.busy_ms,
            )
            return
        fetcher._fetch_max_wait_ms = wait
        self._applied, self._consumer = wait, consumer
