"""The generated section of docs/benchmarks.md, rendered from a result document alone.

Everything between :data:`BEGIN` and :data:`END` is rewritten; the hand-written
text around it is kept. The same document renders the same bytes.
"""

from __future__ import annotations

from typing import Any

BEGIN = "<!-- choreo bench: generated section, from docs/bench/results.json; do not edit -->"
END = "<!-- choreo bench: end of generated section -->"


def replace_section(page: str, section: str) -> str:
    """Return ``page`` with its generated section replaced by ``section`` (appended if none)."""
    block = f"{BEGIN}\n\n{section.strip()}\n\n{END}"
    if BEGIN in page and END in page:
        head, _, rest = page.partition(BEGIN)
        _, _, tail = rest.partition(END)
        return f"{head}{block}{tail}"
    return f"{page.rstrip()}\n\n{block}\n"


def render(document: dict[str, Any], plots: dict[str, str]) -> str:
    """The generated section: run, targets, then one table per scenario and engine.

    Args:
        document: A result document of :func:`choreokit.services.bench.run_suite`.
        plots: Plot name to its path relative to the page, for those that were drawn.
    """
    out: list[str] = ["## Last run (generated)", ""]
    out += _run(document)
    out += _targets(document)
    engines: dict[str, Any] = document.get("engines", {})
    for scenario, title in _TITLES.items():
        measured = {
            e: m["scenarios"][scenario] for e, m in engines.items() if scenario in m["scenarios"]
        }
        if not measured:
            continue
        out += [f"### {title}", ""]
        for engine, result in measured.items():
            out += [f"**{engines[engine]['name']}** ({_fmt(result.get('seconds'))} s)", ""]
            if "error" in result:
                out += [f"Failed: `{result['error']}`", ""]
                continue
            out += _RENDERERS[scenario](result)
        for name in _PLOTS.get(scenario, ()):
            if name in plots:
                out += [f"![{name}]({plots[name]})", ""]
    return "\n".join(out)


_TITLES = {
    "hop": "hop: one handler hop",
    "flow": "flow: a 5-hop chain's latency",
    "saga": "saga: the demo flow end to end",
    "observer": "observer: ingest, backlog catch-up, the flow page",
    "gateway": "gateway: single and batch against the bare endpoint",
    "idle": "idle: choreo dev with no traffic",
}
_PLOTS = {
    "hop": ("hop-throughput",),
    "flow": ("flow-latency-cdf",),
    "saga": ("saga-latency-cdf",),
    "observer": ("observer-ingest",),
    "gateway": ("gateway-throughput",),
}


def _run(document: dict[str, Any]) -> list[str]:
    machine, commit, plan = document["machine"], document["commit"], document["plan"]
    sha = commit.get("sha") or "unknown"
    dirty = " (with uncommitted changes)" if commit.get("dirty") else ""
    engines = ", ".join(m["name"] for m in document.get("engines", {}).values())
    lines = [
        f"`choreo bench` of commit `{sha[:12]}`{dirty}, {document['generated']}, "
        f"{_fmt(document.get('seconds'))} s in all.",
        "",
        f"* machine: {machine['processor']}, {machine['cpus']} CPUs, {machine['python']}, "
        f"{machine['platform']}; load average {_loads(machine.get('load_average'))} before, "
        f"{_loads(machine.get('load_average_after'))} after",
        f"* engines: {engines}",
        f"* {plan['repeat']} repetitions per figure: the median, with min – max "
        "(and the interquartile range in the JSON)",
    ]
    if plan.get("quick"):
        lines.append("* **`--quick`: one small repetition; these figures measure nothing**")
    return [*lines, ""]


def _targets(document: dict[str, Any]) -> list[str]:
    rows = document.get("targets", [])
    if not rows:
        return []
    lines = [
        "### Targets",
        "",
        "| engine | target | measured | bound | met |",
        "|---|---|---:|---|---|",
    ]
    for row in rows:
        name = document["engines"][row["engine"]]["name"]
        unit = "" if row["unit"] == "×" else f" {row['unit']}"
        measured = "—" if row["measured"] is None else f"{_fmt(row['measured'])}{unit or '×'}"
        verdict = {True: "yes", False: "**no**", None: "not measured"}[row["met"]]
        lines.append(f"| {name} | {row['what']} | {measured} | {row['target']} | {verdict} |")
    return [*lines, ""]


def _hop(result: dict[str, Any]) -> list[str]:
    lines = ["| variant | msgs/s | CPU µs/msg | spans received |", "|---|---:|---:|---:|"]
    for variant in result["variants"].values():
        if "skipped" in variant:
            lines.append(f"| {variant['label']} | skipped: {variant['skipped']} | | |")
            continue
        metrics = variant["metrics"]
        spans = variant.get("spans_received")
        lines.append(
            f"| {variant['label']} | {_spread(metrics['rate'])} | {_spread(metrics['cpu_us'])} | "
            f"{', '.join(str(s) for s in spans) if spans else ''} |"
        )
    return [*lines, "", *_ratios(result), ""]


def _flow(result: dict[str, Any]) -> list[str]:
    lines = [
        "| chain | flows/s | flows | p50 ms | p95 ms | p99 ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for variant in result["variants"].values():
        for point in variant["rates"]:
            m = point["metrics"]
            lines.append(
                f"| {variant['label']} | {_fmt(point['rate'])} | {point['flows']} | "
                f"{_spread(m['p50_ms'])} | {_spread(m['p95_ms'])} | {_spread(m['p99_ms'])} |"
            )
    lines.append("")
    for variant in result["variants"].values():
        best = variant.get("highest_rate_p99_under_50ms")
        said = f"{_fmt(best)} flows/s" if best is not None else "none of the rates tried"
        lines.append(f"* {variant['label']}: highest rate with p99 under 50 ms: {said}")
    return [*lines, ""]


def _saga(result: dict[str, Any]) -> list[str]:
    lines = [
        "| flows | p50 ms | p95 ms | p99 ms | outcomes |",
        "|---:|---:|---:|---:|---|",
    ]
    m = result["metrics"]
    outcomes = ", ".join(f"{k} {v}" for k, v in sorted(result.get("outcomes", {}).items()))
    lines.append(
        f"| {result['flows']} | {_spread(m['p50_ms'])} | {_spread(m['p95_ms'])} | "
        f"{_spread(m['p99_ms'])} | {outcomes} |"
    )
    return [*lines, "", *[f"* {note}" for note in result.get("notes", [])], ""]


def _observer(result: dict[str, Any]) -> list[str]:
    lines = [
        "| database | ingest events/s | backlog | caught up in | flow page p50 ms | p95 ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for variant in result["variants"].values():
        if "skipped" in variant:
            lines.append(f"| {variant['label']} | skipped: {variant['skipped']} | | | | |")
            continue
        m = variant["metrics"]
        lines.append(
            f"| {variant['label']} | {_spread(m['ingest_rate'])} | {variant['backlog']:,} | "
            f"{_fmt(variant['catch_up_s'])} s | {_spread(m['detail_ms'])} | "
            f"{_fmt(variant['detail_p95_ms'])} |"
        )
    return [*lines, "", *_ratios(result), ""]


def _gateway(result: dict[str, Any]) -> list[str]:
    lines = [
        "| target | mode | requests/s | events/s | p50 ms | p99 ms | errors |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for variant in result["variants"].values():
        m = variant["metrics"]
        lines.append(
            f"| {variant['label']} | {variant['mode']} | {_spread(m['requests_per_s'])} | "
            f"{_spread(m['events_per_s'])} | {_spread(m['p50_ms'])} | {_spread(m['p99_ms'])} | "
            f"{variant['errors']} |"
        )
    concurrency = result.get("concurrency")
    return [*lines, "", f"{concurrency} connections.", "", *_ratios(result), ""]


def _ratios(result: dict[str, Any]) -> list[str]:
    ratios = {k: v for k, v in result.get("ratios", {}).items() if v is not None}
    if not ratios:
        return []
    return ["Ratios of the medians: " + ", ".join(f"{k} **{_fmt(v)}×**" for k, v in ratios.items())]


def _idle(result: dict[str, Any]) -> list[str]:
    lines = ["| what | processes | % of a core |", "|---|---:|---:|"]
    for variant in result["variants"].values():
        if "skipped" in variant:
            lines.append(f"| {variant['label']} | skipped: {variant['skipped']} | |")
            continue
        lines.append(
            f"| {variant['label']} | {variant['processes']} | "
            f"{_spread(variant['metrics']['cpu_percent'])} |"
        )
    return [*lines, ""]


_RENDERERS = {
    "hop": _hop,
    "flow": _flow,
    "saga": _saga,
    "observer": _observer,
    "gateway": _gateway,
    "idle": _idle,
}


def _spread(s: dict[str, Any] | None) -> str:
    if not s or s.get("median") is None:
        return "—"
    if s["n"] == 1:
        return _fmt(s["median"])
    return f"{_fmt(s['median'])} ({_fmt(s['min'])} – {_fmt(s['max'])})"


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    number = float(value)
    if abs(number) >= 1000:  # noqa: PLR2004 - thousands get separators
        return f"{number:,.0f}"
    if abs(number) >= 100:  # noqa: PLR2004 - and hundreds no decimals
        return f"{number:.0f}"
    if abs(number) >= 10:  # noqa: PLR2004 - tens one
        return f"{number:.1f}"
    return f"{number:.2f}"


def _loads(values: list[float] | None) -> str:
    return " / ".join(f"{v:.2f}" for v in values) if values else "—"
