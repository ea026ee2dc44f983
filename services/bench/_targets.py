"""The issue's targets, checked against a result document: measured, target, met or not."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Lookup = Callable[[dict[str, Any]], float | None]
BACKLOG = 100_000


@dataclass(frozen=True)
class Target:
    """One figure the suite must reach on one engine (``None``: on every engine measured)."""

    what: str
    measured: Lookup
    bound: float
    at_least: bool = True
    unit: str = "×"
    engine: str | None = None

    @property
    def scenarios(self) -> tuple[str, ...]:
        """The scenarios the figure comes from (the target is checked when all ran)."""
        head = self.what.partition(":")[0]
        return ("observer", "hop") if "hop's rate" in self.what else (head,)

    def text(self) -> str:
        """The bound as the report prints it."""
        sign = "≥" if self.at_least else "≤"
        return f"{sign} {_fmt(self.bound)}{'' if self.unit == '×' else ' '}{self.unit}"


def _path(*keys: str) -> Lookup:
    def lookup(scenarios: dict[str, Any]) -> float | None:
        value: Any = scenarios
        for key in keys:
            if not isinstance(value, dict) or key not in value:
                return None
            value = value[key]
        return float(value) if isinstance(value, int | float) else None

    return lookup


def _median(scenario: str, variant: str, metric: str) -> Lookup:
    return _path(scenario, "variants", variant, "metrics", metric, "median")


def _ratio(scenario: str, name: str) -> Lookup:
    return _path(scenario, "ratios", name)


def _observer_vs_hop(backend: str) -> Lookup:
    def lookup(scenarios: dict[str, Any]) -> float | None:
        ingest = _median("observer", backend, "ingest_rate")(scenarios)
        hop = _median("hop", "choreokit", "rate")(scenarios)
        return round(ingest / hop, 3) if ingest is not None and hop else None

    return lookup


def _catch_up(backend: str) -> Lookup:
    """The catch-up time of a full 100,000-event backlog (a smaller one does not count)."""

    def lookup(scenarios: dict[str, Any]) -> float | None:
        if (_path("observer", "variants", backend, "backlog")(scenarios) or 0) < BACKLOG:
            return None
        return _path("observer", "variants", backend, "catch_up_s")(scenarios)

    return lookup


def _flow_at(rate: float, chain: str, metric: str) -> Lookup:
    def lookup(scenarios: dict[str, Any]) -> float | None:
        for point in scenarios.get("flow", {}).get("variants", {}).get(chain, {}).get("rates", []):
            if point["rate"] == rate:
                value = point["metrics"][metric]["median"]
                return float(value) if value is not None else None
        return None

    return lookup


def _flow_vs_raw(rate: float) -> Lookup:
    def lookup(scenarios: dict[str, Any]) -> float | None:
        ours = _flow_at(rate, "choreokit", "p99_ms")(scenarios)
        raw = _flow_at(rate, "aiokafka", "p99_ms")(scenarios)
        return round(ours / raw, 3) if ours is not None and raw else None

    return lookup


TARGETS = (
    Target("hop: choreokit untraced / raw aiokafka", _ratio("hop", "choreokit/aiokafka"), 0.6),
    Target("hop: traced 100 % / untraced", _ratio("hop", "traced/untraced"), 0.6),
    Target(
        "hop: traced 100 % / FastStream + its OTel middleware",
        _ratio("hop", "traced/faststream-otel"),
        5,
    ),
    Target("hop: traced 10 % / untraced", _ratio("hop", "traced-10/untraced"), 0.9),
    Target(
        "flow: 5-hop p99 at 100 flows/s",
        _flow_at(100.0, "choreokit", "p99_ms"),
        25,
        at_least=False,
        unit="ms",
        engine="kafka",
    ),
    Target(
        "flow: 5-hop p99 at 100 flows/s / raw chain's",
        _flow_vs_raw(100.0),
        1.5,
        at_least=False,
        engine="kafka",
    ),
    Target(
        "observer: ingest on SQLite",
        _median("observer", "sqlite", "ingest_rate"),
        20_000,
        unit="events/s",
    ),
    Target(
        "observer: ingest on PostgreSQL",
        _median("observer", "postgresql", "ingest_rate"),
        10_000,
        unit="events/s",
    ),
    Target("observer: SQLite ingest / the hop's rate", _observer_vs_hop("sqlite"), 1),
    Target("observer: PostgreSQL ingest / the hop's rate", _observer_vs_hop("postgresql"), 1),
    Target(
        "observer: 100,000-event backlog caught up (SQLite)",
        _catch_up("sqlite"),
        15,
        at_least=False,
        unit="s",
    ),
    Target(
        "observer: 100,000-event backlog caught up (PostgreSQL)",
        _catch_up("postgresql"),
        15,
        at_least=False,
        unit="s",
    ),
    Target("gateway: single events/s / bare endpoint", _ratio("gateway", "single/bare"), 0.7),
    Target("gateway: batch events/s / bare endpoint", _ratio("gateway", "batch/bare"), 0.7),
    Target(
        "idle: choreo dev, % of a core (with the embedded broker)",
        _median("idle", "dev", "cpu_percent"),
        15,
        at_least=False,
        unit="%",
        engine="tansu",
    ),
    Target(
        "idle: choreo dev, % of a core",
        _median("idle", "dev", "cpu_percent"),
        5,
        at_least=False,
        unit="%",
        engine="kafka",
    ),
    Target(
        "gateway: single p99 at 16 connections",
        _median("gateway", "gateway-single", "p99_ms"),
        20,
        at_least=False,
        unit="ms",
    ),
)


def evaluate(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Every target on every engine it applies to, with the measured figure and the verdict."""
    rows = []
    for engine, measured in document.get("engines", {}).items():
        scenarios = measured.get("scenarios", {})
        for target in TARGETS:
            if target.engine is not None and target.engine != engine:
                continue
            if not set(target.scenarios) <= set(scenarios):
                continue
            value = target.measured(scenarios)
            met = None
            if value is not None:
                met = value >= target.bound if target.at_least else value <= target.bound
            rows.append(
                {
                    "engine": engine,
                    "what": target.what,
                    "target": target.text(),
                    "measured": value,
                    "unit": target.unit,
                    "met": met,
                }
            )
    return rows


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if value >= 1000 else f"{value:g}"  # noqa: PLR2004 - thousands
