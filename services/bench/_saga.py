"""``saga``: the demo's order flow end to end, on a whole ``choreo dev`` system.

One ``choreo dev --example`` runs on the engine's broker (every example
service its own process, the observer, the gateway); ``choreo demo
--bootstrap`` then drives ``saga_orders`` orders through it ``repeat`` times
(a different seed each time) and reports the flows' durations, from the order
placed to the flow's last event, with the deterministic mix of failures,
compensations and the simulated carrier's retries. A repetition whose demo
does not hold its own check (every flow ended as injected, the observer
agreeing on this run's flows) fails the scenario: no figures from a broken run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from choreokit.services.bench._context import Context
from choreokit.services.bench._dev import running_dev
from choreokit.services.bench._stats import cdf, summary

DEMO_TIMEOUT = 180


class DemoCheckError(RuntimeError):
    """A repetition's demo did not hold its own check: its figures would measure a broken run."""

    def __init__(self, repetition: int, summary: dict[str, Any], exit_code: int) -> None:
        unexplained = summary.get("unexplained") or []
        shown = "; ".join(
            f"{u.get('order_id')}: injected {u.get('kind')}, got {u.get('observed')}"
            for u in unexplained[:5]
        )
        super().__init__(
            f"repetition {repetition}: choreo demo exited {exit_code}, ok={summary.get('ok')}: "
            f"{len(unexplained)} flow(s) did not end as injected{f' ({shown})' if shown else ''}; "
            f"the demo's outcomes {summary.get('outcomes')}, the observer's "
            f"{summary.get('observer')} (agrees: {summary.get('observer_agrees')})"
        )
        self.repetition = repetition
        self.summary = summary


def run(ctx: Context) -> dict[str, Any]:
    """Start ``choreo dev`` on the broker, run the demo ``repeat`` times, stop it."""
    runs: list[dict[str, Any]] = []
    with running_dev(ctx, "saga-dev") as (_dev, urls):
        for rep in range(ctx.repeat):
            demo = [sys.executable, "-m", "choreokit.services.cli", "demo", "--json"]
            demo += ["--bootstrap", ctx.bootstrap, "--orders", str(ctx.sizes.saga_orders)]
            demo += ["--seed", str(rep + 1), "--timeout", str(DEMO_TIMEOUT)]
            demo += ["--orders-url", urls["orders"].removesuffix("/orders")]
            if "saga-observer" in urls:
                demo += ["--observer-url", urls["saga-observer"]]
            done = subprocess.run(
                demo,
                env=ctx.child_env(),
                capture_output=True,
                text=True,
                timeout=DEMO_TIMEOUT + 60,
                check=False,
            )
            if not done.stdout.strip():
                raise RuntimeError(f"choreo demo failed ({done.returncode}): {done.stderr[-2000:]}")
            one = json.loads(done.stdout)
            if not one["ok"] or done.returncode != 0:
                raise DemoCheckError(rep + 1, one, done.returncode)
            runs.append(one)
            d = one["flow_duration_ms"]
            ctx.log(
                f"  saga {ctx.engine} rep {rep + 1}: {one['orders']} orders, ok={one['ok']}, "
                f"p50 {d['p50']:.0f} ms p99 {d['p99']:.0f} ms"
            )
    outcomes: dict[str, int] = {}
    for one in runs:
        for outcome, count in one["outcomes"].items():
            outcomes[outcome] = outcomes.get(outcome, 0) + int(count)
    return {
        "unit": "ms",
        "flows": sum(int(one["orders"]) for one in runs),
        "metrics": {
            f"{q}_ms": summary([one["flow_duration_ms"][q] for one in runs])
            for q in ("p50", "p95", "p99")
        },
        "events_per_s": summary([one["events_per_second"] for one in runs]),
        "cdf": cdf(sorted(d for one in runs for d in one.get("flow_durations_ms", ()))),
        "outcomes": outcomes,
        "notes": [
            f"{ctx.sizes.saga_orders} orders per repetition at the demo's default rate "
            "(10 orders/s); durations include the shipping service's simulated carrier",
        ],
    }
