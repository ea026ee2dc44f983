"""Bounded retries with exponential backoff, and which errors deserve them."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

from pydantic import ValidationError

from choreokit.events._errors import ChoreoError


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently a failing handler is tried again.

    The n-th retry waits ``first_backoff * multiplier**(n-1)``, capped at
    ``max_backoff``, with up to ``jitter`` of it added at random so that
    replicas do not retry in lockstep.

    Attributes:
        max_attempts: Tries in all, the first included; 1 means no retry.
        first_backoff: Wait before the first retry.
        max_backoff: Longest wait between two tries.
        multiplier: Growth of the wait from one retry to the next.
        jitter: Fraction of each wait added at random (0 for none).
    """

    max_attempts: int = 3
    first_backoff: timedelta = timedelta(milliseconds=100)
    max_backoff: timedelta = timedelta(seconds=5)
    multiplier: float = 2.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.multiplier < 1 or not 0 <= self.jitter <= 1:
            raise ValueError("multiplier must be >= 1 and jitter within [0, 1]")

    def backoffs(self) -> Iterator[float]:
        """Yield the wait, in seconds, before each retry (``max_attempts - 1`` of them)."""
        delay = self.first_backoff.total_seconds()
        cap = self.max_backoff.total_seconds()
        for _ in range(self.max_attempts - 1):
            base = min(delay, cap)
            yield base + base * self.jitter * random.random()  # noqa: S311 - jitter, not secrets
            delay *= self.multiplier


def is_retriable(exc: BaseException) -> bool:
    """Whether trying again may help.

    Errors of choreokit say so through their type's ``retriable`` flag; a
    pydantic validation error raised inside a handler is a bug that another try
    will not fix; anything else (a database hiccup, a timeout) is tried again.
    """
    if isinstance(exc, ChoreoError):
        return exc.retriable
    return not isinstance(exc, ValidationError)
