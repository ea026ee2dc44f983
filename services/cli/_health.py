"""``choreo health``: a container healthcheck for ``choreo run`` (any service)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import click


@click.command()
@click.option(
    "--max-age",
    default=30.0,
    show_default=True,
    help="Seconds since the service's last heartbeat beyond which it counts as unhealthy.",
)
def health(max_age: float) -> None:
    """Exit 0 if the service of this container is up and its event loop is alive.

    'choreo run' writes $CHOREO_READY_FILE once the service is up and touches
    it every few seconds from its event loop; this checks the file is there
    and fresh.
    """
    from choreokit.services.runtime.app import READY_FILE_ENV

    path = os.environ.get(READY_FILE_ENV)
    if not path:
        raise click.UsageError(f"{READY_FILE_ENV} is not set (the image sets it)")
    try:
        age = time.time() - Path(path).stat().st_mtime
    except FileNotFoundError:
        click.echo("unhealthy: not up yet", err=True)
        raise SystemExit(1) from None
    if age > max_age:
        click.echo(f"unhealthy: last heartbeat {age:.0f}s ago", err=True)
        raise SystemExit(1)
    click.echo(f"healthy (heartbeat {age:.1f}s ago)")
