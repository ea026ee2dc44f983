"""A token bucket per API key: ``burst`` requests at once, refilled at ``rate`` per second."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Counts each key's requests against its own bucket.

    Every request costs one token, charged before its body is read, so a
    flood of bad requests is limited like a flood of good ones. A batch is
    one request; its size is bounded separately (``CHOREO_GATEWAY_MAX_BATCH``).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def take(self, key_id: str, *, rate: float, burst: int) -> float:
        """Charge one request to ``key_id``.

        Returns:
            0 if the request may proceed, else the seconds until it could.
        """
        now = self._clock()
        bucket = self._buckets.get(key_id)
        if bucket is None:
            bucket = self._buckets[key_id] = _Bucket(tokens=float(burst), updated=now)
        bucket.tokens = min(float(burst), bucket.tokens + (now - bucket.updated) * rate)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / rate


def retry_after(seconds: float) -> str:
    """The ``Retry-After`` header value (whole seconds, at least 1) for a wait."""
    return str(max(1, math.ceil(seconds)))
