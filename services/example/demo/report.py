"""The demo's summary: outcomes against what was injected, durations, throughput."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from choreokit.services.example.demo.plan import EXPECTED, Kind, Outcome, PlannedOrder
from choreokit.services.example.demo.tracker import Flow


@dataclass(frozen=True)
class Summary:
    """What a demo run found."""

    orders: int
    seed: int
    by_kind: Mapping[str, Mapping[str, int]]
    """kind -> {"planned": n, "as expected": n} ."""
    outcomes: Mapping[str, int]
    versions: Mapping[str, int]
    unexplained: Sequence[Mapping[str, Any]]
    durations_ms: Mapping[str, float]
    events: int
    seconds: float
    urls: Mapping[str, str] = field(default_factory=dict)
    bootstrap: str = ""
    """The Kafka the demo ran on (its bootstrap servers)."""
    observer: Mapping[str, int] | None = None
    """The saga observer's counts by status for the same flows, when one runs."""
    transitions: Mapping[str, int] = field(default_factory=dict)
    """``"cause type -> effect type"``: how many flows had such a step (the saga map's edges)."""
    kept: bool = False
    """Whether the system keeps running after the summary."""
    approvals: Mapping[str, int] | None = None
    """Decisions the demo took through the observer's API (``approved``/``rejected``: n);
    ``None``: the system asked for none."""
    flow_durations_ms: Sequence[float] = ()
    """Every ended flow's duration, sorted (the latency distribution ``choreo bench`` plots)."""

    @property
    def observer_agrees(self) -> bool | None:
        """Whether the observer judged the flows as the demo did (``None``: no observer)."""
        if not self.urls.get("saga-observer"):
            return None
        return self.observer is not None and dict(self.observer) == dict(self.outcomes)

    @property
    def ok(self) -> bool:
        """Every flow ended as its injection explains (and the observer, if any, agrees)."""
        return not self.unexplained and self.observer_agrees is not False

    @property
    def events_per_second(self) -> float:
        """Events of the demo's flows per second of the run."""
        return self.events / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        """The summary as JSON-ready values."""
        return {
            "orders": self.orders,
            "seed": self.seed,
            "ok": self.ok,
            "outcomes": dict(self.outcomes),
            "by_kind": {k: dict(v) for k, v in self.by_kind.items()},
            "order_placed_versions": dict(self.versions),
            "flow_duration_ms": dict(self.durations_ms),
            "flow_durations_ms": [round(d, 2) for d in self.flow_durations_ms],
            "events": self.events,
            "seconds": round(self.seconds, 3),
            "events_per_second": round(self.events_per_second, 1),
            "unexplained": list(self.unexplained),
            "transitions": dict(self.transitions),
            "approvals": dict(self.approvals) if self.approvals is not None else None,
            "observer": dict(self.observer) if self.observer is not None else None,
            "observer_agrees": self.observer_agrees,
            "urls": dict(self.urls),
            "bootstrap": self.bootstrap,
        }

    def render(self) -> str:
        """The summary as a table for the terminal."""
        lines = [f"choreo demo: {self.orders} orders, seed {self.seed}", ""]
        lines.append(f"  {'injected':<22}{'orders':>8}{'ended as expected':>20}   expected end")
        for kind in Kind:
            if kind.value not in self.by_kind and kind in (Kind.APPROVED, Kind.REJECTED):
                continue  # the system asked for no approvals
            row = self.by_kind.get(kind.value, {})
            expected = EXPECTED[kind][0].value
            lines.append(
                f"  {kind.value:<22}{row.get('planned', 0):>8}{row.get('as expected', 0):>20}"
                f"   {expected}"
            )
        lines.append("")
        outcome_text = ", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items()))
        lines.append(f"  outcomes        {outcome_text}")
        d = self.durations_ms
        lines.append(
            f"  flow duration   p50 {d.get('p50', 0):.0f} ms   p95 {d.get('p95', 0):.0f} ms"
            f"   p99 {d.get('p99', 0):.0f} ms   max {d.get('max', 0):.0f} ms"
        )
        lines.append(
            f"  throughput      {self.events_per_second:.0f} events/s "
            f"({self.events} events in {self.seconds:.2f} s)"
        )
        if self.approvals is not None:
            made = ", ".join(f"{k} {v}" for k, v in sorted(self.approvals.items())) or "none"
            lines.append(f"  approvals       {made} (as an operator, through the observer's API)")
        versions = ", ".join(f"{k} {v}" for k, v in sorted(self.versions.items()))
        lines.append(f"  order.placed    {versions}")
        if self.observer_agrees is not None:
            seen = ", ".join(f"{k} {v}" for k, v in sorted((self.observer or {}).items()))
            verdict = "agrees" if self.observer_agrees else "DISAGREES"
            lines.append(f"  saga observer   {verdict}: {seen or 'no verdicts in time'}")
        if self.unexplained:
            lines.append("")
            lines.append(f"  {len(self.unexplained)} flow(s) did not end as their injection says:")
            lines.extend(
                f"    {item['order_id']}: injected {item['kind']}, "
                f"expected {item['expected']}, got {item['observed']}"
                + (f" ({item['reason']})" if item.get("reason") else "")
                for item in self.unexplained[:20]
            )
        lines.append("")
        lines.append("  where to look next:")
        if self.bootstrap:
            lines.append(f"    {'kafka':<16}{self.bootstrap}")
        for name, url in sorted(self.urls.items()):
            lines.append(f"    {name:<16}{url}")
        if self.urls and not self.kept:
            lines.append("    (the demo stopped its system: run it with --keep to explore these)")
        tail = "choreo tail --from-beginning"
        if self.bootstrap:
            tail += f" --bootstrap {self.bootstrap}"
        lines.append(f"    {tail}   every event, decoded")
        lines.append("    docs/demo.md                   what just happened, step by step")
        return "\n".join(lines)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def summarise(
    planned: Sequence[PlannedOrder],
    correlation: Mapping[str, str],
    flows: Mapping[str, Flow],
    *,
    seed: int,
    seconds: float,
    urls: Mapping[str, str],
    bootstrap: str = "",
) -> Summary:
    """Judge every planned order's flow against its injected kind."""
    by_kind: dict[str, Counter[str]] = {}
    outcomes: Counter[str] = Counter()
    versions: Counter[str] = Counter()
    unexplained = []
    durations = []
    events = 0
    transitions: Counter[str] = Counter()
    for order in planned:
        row = by_kind.setdefault(order.kind.value, Counter())
        row["planned"] += 1
        versions[f"v{order.version}"] += 1
        flow = flows.get(correlation.get(order.order_id, ""))
        outcome, reason, ended = flow.judge() if flow else (Outcome.RUNNING, None, None)
        if outcome is Outcome.RUNNING and flow is not None and "order.cancelled" in flow.types:
            outcome = Outcome.FAILED_UNCOMPENSATED
        outcomes[outcome.value] += 1
        expected, expected_reason = EXPECTED[order.kind]
        if outcome is expected and reason == expected_reason:
            row["as expected"] += 1
        else:
            unexplained.append(
                {
                    "order_id": order.order_id,
                    "kind": order.kind.value,
                    "expected": expected.value,
                    "observed": outcome.value,
                    "reason": reason,
                }
            )
        if flow is not None:
            events += len(flow.events)
            transitions.update(flow.transitions)
            started = flow.started_at
            if ended is not None and started is not None:
                durations.append((ended - started).total_seconds() * 1000)
    return Summary(
        orders=len(planned),
        seed=seed,
        by_kind={k: dict(v) for k, v in by_kind.items()},
        outcomes=dict(outcomes),
        versions=dict(versions),
        unexplained=unexplained,
        durations_ms={
            "p50": percentile(durations, 50),
            "p95": percentile(durations, 95),
            "p99": percentile(durations, 99),
            "max": max(durations, default=0.0),
        },
        events=events,
        seconds=seconds,
        urls=urls,
        bootstrap=bootstrap,
        transitions=dict(sorted(transitions.items())),
        flow_durations_ms=tuple(sorted(durations)),
    )
