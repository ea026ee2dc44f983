"""``choreo schemas export|check``: the committed contract under ``schemas/``."""

from __future__ import annotations

from pathlib import Path

import click

_DIR_OPTION = click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("schemas"),
    show_default=True,
    help="The schemas directory.",
)


@click.group()
def schemas() -> None:
    """Export or check the JSON Schemas of every declared event type and version."""


@schemas.command()
@_DIR_OPTION
@click.option("--force", is_flag=True, help="Overwrite committed versions even if incompatible.")
def export(directory: Path, force: bool) -> None:
    """Write schemas/<type>/v<N>.json for every declared event version."""
    from events import default_registry
    from events._contract import export_directory
    from services.runtime.discovery import load_event_modules

    load_event_modules()
    written, refused = export_directory(default_registry, directory, force=force)
    for rel in written:
        click.echo(f"wrote {directory / rel}")
    for problem in refused:
        click.echo(f"error: {directory / problem.path}: {problem.message}", err=True)
    if not written and not refused:
        click.echo(f"{directory}: up to date ({len(default_registry)} schemas)")
    if refused:
        raise SystemExit(1)


@schemas.command()
@_DIR_OPTION
def check(directory: Path) -> None:
    """Fail if committed schemas are stale, missing, or were changed incompatibly."""
    from events import default_registry
    from events._contract import check_directory
    from services.runtime.discovery import load_event_modules

    load_event_modules()
    problems = check_directory(default_registry, directory)
    for problem in problems:
        click.echo(f"error: {directory / problem.path}: {problem.message}", err=True)
    if problems:
        raise SystemExit(1)
    click.echo(f"{directory}: {len(default_registry)} schemas match the declared events")
