"""``choreo run SERVICE``: one service in the foreground, as a container runs it."""

from __future__ import annotations

import click


@click.command()
@click.argument("service")
def run(service: str) -> None:
    """Run one SERVICE until SIGTERM or Ctrl-C."""
    click.echo(
        f"error: no service named {service!r} can run yet (coming with the services)", err=True
    )
    raise SystemExit(2)
