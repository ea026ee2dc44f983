"""The outage tests' throughput figure (tests/chaos/outage.py) on made-up end times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.chaos.outage import throughput

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def ends(*spans: tuple[float, float, float]) -> list[datetime]:
    """Flows ending at ``rate`` per second from ``start`` to ``stop`` (seconds after T0)."""
    found = []
    for start, stop, rate in spans:
        n = int((stop - start) * rate)
        found += [T0 + timedelta(seconds=start + i / rate) for i in range(n)]
    return found


def test_a_backlog_drained_at_once_is_back_at_once() -> None:
    figures = throughput(
        ends((0, 10, 10), (16, 20, 30), (20, 40, 10)), T0.timestamp() + 10, T0.timestamp() + 16
    )
    assert figures.before == pytest.approx(10, abs=0.5)
    assert figures.back_after == 0
    assert figures.best_after >= 20


def test_flows_that_come_back_slowly_are_back_when_a_window_reaches_the_old_rate() -> None:
    figures = throughput(
        ends((0, 10, 10), (16, 28, 2), (28, 60, 10)), T0.timestamp() + 10, T0.timestamp() + 16
    )
    assert figures.back_after is not None
    assert 8 <= figures.back_after <= 12  # the slow 12 s, less a window that reaches ahead


def test_flows_that_never_come_back_are_never_back() -> None:
    figures = throughput(ends((0, 10, 10), (16, 40, 1)), T0.timestamp() + 10, T0.timestamp() + 16)
    assert figures.back_after is None
    assert figures.best_after == pytest.approx(1, abs=0.3)
