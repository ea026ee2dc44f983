"""``choreo bench``: one benchmark suite over every scenario, on both engines.

Each scenario is measured against its baselines in the same run, on the same
broker, ``repeat`` times; the report gives medians with their spread and the
ratios of the medians, checks the targets, and regenerates the generated
section of ``docs/benchmarks.md`` with its plots (see that page).

Scenarios: ``hop`` (one handler hop, against raw aiokafka and FastStream),
``flow`` (a 5-hop chain's latency at fixed rates, against a raw chain),
``saga`` (the demo end to end), ``observer`` (ingest, backlog catch-up, the
flow page), ``gateway`` (single and batch, against a bare endpoint) and
``idle`` (an idle ``choreo dev``'s CPU).
"""

from choreokit.services.bench._context import ENGINES, Sizes
from choreokit.services.bench._report import load_json, save_json, write_docs
from choreokit.services.bench._suite import SCENARIOS, run_suite
from choreokit.services.bench._targets import evaluate

__all__ = [
    "ENGINES",
    "SCENARIOS",
    "Sizes",
    "evaluate",
    "load_json",
    "run_suite",
    "save_json",
    "write_docs",
]
