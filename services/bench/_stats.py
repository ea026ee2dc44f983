"""Medians with their spread, and ratios of medians: the numbers every scenario reports."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any


def summary(values: Sequence[float]) -> dict[str, Any]:
    """The median of ``values`` with its spread (min, quartiles, max) and the values themselves."""
    ordered = sorted(float(v) for v in values)
    if not ordered:
        return {"n": 0, "median": None, "min": None, "max": None, "q1": None, "q3": None}
    if len(ordered) >= 2:  # noqa: PLR2004 - quantiles need two points
        q1, _, q3 = statistics.quantiles(ordered, n=4, method="inclusive")
    else:
        q1 = q3 = ordered[0]
    return {
        "n": len(ordered),
        "median": _round(statistics.median(ordered)),
        "min": _round(ordered[0]),
        "max": _round(ordered[-1]),
        "q1": _round(q1),
        "q3": _round(q3),
        "values": [_round(v) for v in ordered],
    }


def percentile(ordered: Sequence[float], q: float) -> float:
    """The ``q``-th percentile of sorted ``ordered`` (nearest rank)."""
    rank = max(1, round(q / 100 * len(ordered) + 0.5))
    return float(ordered[min(rank, len(ordered)) - 1])


def ratio(numerator: dict[str, Any] | None, denominator: dict[str, Any] | None) -> float | None:
    """The ratio of two summaries' medians, or ``None`` when either is missing or zero."""
    if not numerator or not denominator:
        return None
    a, b = numerator.get("median"), denominator.get("median")
    if a is None or not b:
        return None
    return round(float(a) / float(b), 3)


def _round(value: float) -> float:
    """Round to four significant-ish places: enough for a benchmark, stable in JSON."""
    magnitude = abs(value)
    if magnitude >= 100:  # noqa: PLR2004 - the cut-offs are the rounding rule
        return round(value, 1)
    if magnitude >= 1:
        return round(value, 3)
    return round(value, 5)


def cdf(ordered: list[float], points: int = 100) -> list[list[float]]:
    """At most ``points`` (latency, fraction) pairs of the sorted latencies."""
    if not ordered:
        return []
    step = max(1, len(ordered) // points)
    picks = [*range(0, len(ordered), step), len(ordered) - 1]
    return [[round(ordered[i], 2), round((i + 1) / len(ordered), 4)] for i in sorted(set(picks))]
