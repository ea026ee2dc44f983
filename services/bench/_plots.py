"""PNG plots of a result document: throughput bars (median, min – max) and latency CDFs.

matplotlib (the ``bench`` extra) on its Agg backend; the files carry no
timestamp, so one document draws the same bytes with one matplotlib version.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from choreokit.events import needs_extra

Bars = list[tuple[str, dict[str, Any]]]


def draw(document: dict[str, Any], directory: Path) -> dict[str, Path]:
    """Draw every plot the document has data for into ``directory``; return name to path."""
    with needs_extra("bench", "choreo bench's plots"):
        import matplotlib as mpl

    mpl.use("Agg")
    directory.mkdir(parents=True, exist_ok=True)
    engines: dict[str, Any] = document.get("engines", {})
    drawn: dict[str, Path] = {}
    for name, maker in _MAKERS.items():
        path = directory / f"{name}.png"
        if maker(engines, path):
            drawn[name] = path
    return drawn


def _bars(path: Path, title: str, unit: str, groups: dict[str, Bars]) -> bool:
    import matplotlib.pyplot as plt

    groups = {g: bars for g, bars in groups.items() if bars}
    if not groups:
        return False
    labels = list(dict.fromkeys(label for bars in groups.values() for label, _ in bars))
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(labels) * len(groups) + 1.5), dpi=100)
    height = 0.8 / len(groups)
    for index, (group, bars) in enumerate(groups.items()):
        by_label = dict(bars)
        ys, medians, low, high = [], [], [], []
        for row, label in enumerate(labels):
            summary = by_label.get(label)
            if not summary or summary.get("median") is None:
                continue
            ys.append(row + index * height)
            medians.append(summary["median"])
            low.append(summary["median"] - summary["min"])
            high.append(summary["max"] - summary["median"])
        ax.barh(ys, medians, height=height, xerr=[low, high], capsize=3, label=group)
    ax.set_yticks([row + height * (len(groups) - 1) / 2 for row in range(len(labels))], labels)
    ax.invert_yaxis()
    ax.set_xlabel(unit)
    ax.set_title(title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    return _save(fig, path)


def _cdf(path: Path, title: str, curves: dict[str, list[list[float]]]) -> bool:
    import matplotlib.pyplot as plt

    curves = {name: points for name, points in curves.items() if points}
    if not curves:
        return False
    fig, ax = plt.subplots(figsize=(9, 5), dpi=100)
    for name, points in curves.items():
        ax.plot([p[0] for p in points], [p[1] for p in points], label=name)
    ax.set_xscale("log")
    ax.set_xlabel("latency, ms (log scale)")
    ax.set_ylabel("fraction of flows")
    ax.set_title(title)
    ax.grid(visible=True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    return _save(fig, path)


def _save(fig: Any, path: Path) -> bool:
    import matplotlib.pyplot as plt

    fig.savefig(path, format="png", metadata={"Software": None})
    plt.close(fig)
    return True


def _scenario(engines: dict[str, Any], name: str) -> dict[str, dict[str, Any]]:
    return {
        m["name"]: m["scenarios"][name]
        for m in engines.values()
        if name in m["scenarios"] and "error" not in m["scenarios"][name]
    }


def _hop(engines: dict[str, Any], path: Path) -> bool:
    groups = {
        engine: [
            (v["label"], v["metrics"]["rate"])
            for v in result["variants"].values()
            if "metrics" in v
        ]
        for engine, result in _scenario(engines, "hop").items()
    }
    return _bars(path, "hop: records handled per second (median, min – max)", "msgs/s", groups)


def _gateway(engines: dict[str, Any], path: Path) -> bool:
    groups = {
        engine: [
            (f"{v['label']}, {v['mode']}", v["metrics"]["events_per_s"])
            for v in result["variants"].values()
        ]
        for engine, result in _scenario(engines, "gateway").items()
    }
    return _bars(path, "gateway: events accepted per second", "events/s", groups)


def _observer(engines: dict[str, Any], path: Path) -> bool:
    groups = {
        engine: [
            (v["label"], v["metrics"]["ingest_rate"])
            for v in result["variants"].values()
            if "metrics" in v
        ]
        for engine, result in _scenario(engines, "observer").items()
    }
    return _bars(path, "observer: events ingested per second", "events/s", groups)


def _flow(engines: dict[str, Any], path: Path) -> bool:
    curves: dict[str, list[list[float]]] = {}
    for engine, result in _scenario(engines, "flow").items():
        for variant in result["variants"].values():
            for point in variant["rates"]:
                if point.get("cdf"):
                    curves[f"{engine}, {variant['label']}, {point['rate']:g}/s"] = point["cdf"]
    return _cdf(path, "flow: 5-hop latency (one repetition per rate)", curves)


def _saga(engines: dict[str, Any], path: Path) -> bool:
    curves = {
        engine: result.get("cdf", []) for engine, result in _scenario(engines, "saga").items()
    }
    return _cdf(path, "saga: the demo's flow durations", curves)


_MAKERS: dict[str, Callable[[dict[str, Any], Path], bool]] = {
    "hop-throughput": _hop,
    "flow-latency-cdf": _flow,
    "saga-latency-cdf": _saga,
    "observer-ingest": _observer,
    "gateway-throughput": _gateway,
}
