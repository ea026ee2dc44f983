"""``choreo bench``: the benchmark suite, ratios against baselines measured in the same run."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from choreokit.services.bench import ENGINES, SCENARIOS


@click.command()
@click.argument("scenarios", nargs=-1, type=click.Choice(SCENARIOS))
@click.option(
    "--engine",
    type=click.Choice([*ENGINES, "both"]),
    default="tansu",
    show_default=True,
    help="The broker(s) to measure on; the suite starts each itself.",
)
@click.option(
    "--repeat",
    type=click.IntRange(1, 50),
    default=5,
    show_default=True,
    help="Repetitions per figure; the report gives their median and spread.",
)
@click.option(
    "--quick",
    is_flag=True,
    help="One small repetition of each: proves the harness, measures nothing.",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path, allow_dash=True),
    default=None,
    help="Write the result document here ('-' for stdout).",
)
@click.option(
    "--write-docs",
    is_flag=True,
    help="Regenerate the generated section of the benchmarks page, its plots and JSON.",
)
@click.option(
    "--docs",
    "page",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("docs/benchmarks.md"),
    show_default=True,
    help="The benchmarks page --write-docs regenerates (plots go to bench/ beside it).",
)
@click.option(
    "--from-json",
    "from_json",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Render a saved result document instead of running (with --write-docs).",
)
def bench(
    scenarios: tuple[str, ...],
    engine: str,
    repeat: int,
    quick: bool,
    json_path: Path | None,
    write_docs: bool,
    page: Path,
    from_json: Path | None,
) -> None:
    """Run the benchmark suite: SCENARIO... of hop, flow, saga, observer, gateway, idle [all].

    Each scenario runs against its baselines in the same run, on the same
    broker: raw aiokafka, bare FastStream (with and without its OpenTelemetry
    middleware), a raw 5-hop chain, a bare FastAPI + aiokafka endpoint. The
    report gives medians of --repeat repetitions with their spread, the ratios,
    and whether each target is met; the whole suite on both engines takes
    under 15 minutes. PostgreSQL variants use CHOREO_BENCH_POSTGRES_URL (or
    CHOREO_TEST_POSTGRES_URL) and are skipped, saying so, without one.
    """
    from choreokit.events.extras import MissingExtraError, require_extra
    from choreokit.services import bench as suite

    try:  # rendering needs matplotlib only; a run needs every scenario's parts
        require_extra("bench", "choreo bench" if from_json is None else "choreo bench's plots")
    except MissingExtraError as exc:
        raise click.UsageError(str(exc)) from None
    if from_json is not None:
        if scenarios or quick:
            raise click.UsageError("--from-json renders a saved run: give no scenarios or --quick")
        document = suite.load_json(from_json)
    else:
        engines = list(ENGINES) if engine == "both" else [engine]
        document = suite.run_suite(
            engines=engines,
            scenarios=list(dict.fromkeys(scenarios)) or list(SCENARIOS),
            repeat=1 if quick else repeat,
            quick=quick,
            source=Path.cwd(),
        )
    if json_path is not None:
        if str(json_path) == "-":
            click.echo(json.dumps(document, indent=2, ensure_ascii=False))
        else:
            suite.save_json(document, json_path)
    if write_docs:
        written = suite.write_docs(document, page)
        click.echo(f"wrote {', '.join(str(p) for p in written.values())}", err=True)
    out = sys.stderr if json_path is not None and str(json_path) == "-" else sys.stdout
    _summary(document, out)
    failed = [
        f"{e}/{s}"
        for e, m in document["engines"].items()
        for s, r in m["scenarios"].items()
        if "error" in r
    ]
    if failed:
        raise click.ClickException(f"scenarios failed: {', '.join(failed)} (see the log above)")


def _summary(document: dict[str, object], out: object) -> None:
    targets = document.get("targets")
    assert isinstance(targets, list)
    for row in targets:
        verdict = {True: "met", False: "NOT MET", None: "not measured"}[row["met"]]
        measured = "-" if row["measured"] is None else f"{row['measured']:g}"
        click.echo(
            f"{row['engine']:6s} {row['what']:56s} {measured:>10s} {row['target']:>14s}  {verdict}",
            file=out,  # type: ignore[arg-type]
        )
