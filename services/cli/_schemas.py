"""``choreo schemas export|check``: the committed contract under ``schemas/``."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from choreokit.events import Service

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
    """Export or check schemas/: a JSON Schema per event type and version, and asyncapi.yaml."""


def _declared_services() -> list[Service]:
    """The event-layer services of every installed service, for the AsyncAPI operations.

    Each service's factory is called (nothing runs); a factory that cannot be
    built here is skipped with a note, and its operations are left out.
    """
    from choreokit.events import ChoreoError, Service
    from choreokit.services.runtime.app import Runtime, load_factory, service_names

    found: list[Service] = []
    with tempfile.TemporaryDirectory() as scratch:
        for name in service_names():
            try:
                app = load_factory(name)(Runtime(name=name, data_dir=Path(scratch)))
            except (ChoreoError, ImportError, ValueError) as exc:
                click.echo(f"note: service {name} left out of asyncapi.yaml ({exc})", err=True)
                continue
            found.extend(s for s in getattr(app, "services", ()) if isinstance(s, Service))
    return found


@schemas.command()
@_DIR_OPTION
@click.option("--force", is_flag=True, help="Overwrite committed versions even if incompatible.")
def export(directory: Path, force: bool) -> None:
    """Write schemas/<type>/v<N>.json for every declared event version, and asyncapi.yaml."""
    from choreokit.events import ASYNCAPI_FILE, default_registry, export_asyncapi, export_schemas
    from choreokit.services.runtime.discovery import load_event_modules

    load_event_modules()
    written, refused = export_schemas(default_registry, directory, force=force)
    if not refused and export_asyncapi(default_registry, _declared_services(), directory):
        written.append(ASYNCAPI_FILE)
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
    from choreokit.events import check_asyncapi, check_schemas, default_registry
    from choreokit.services.runtime.discovery import load_event_modules

    load_event_modules()
    problems = check_schemas(default_registry, directory)
    problems += check_asyncapi(default_registry, _declared_services(), directory)
    for problem in problems:
        click.echo(f"error: {directory / problem.path}: {problem.message}", err=True)
    if problems:
        raise SystemExit(1)
    click.echo(
        f"{directory}: {len(default_registry)} schemas and asyncapi.yaml match the declared events"
    )
