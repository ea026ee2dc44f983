"""``choreo dev`` and ``choreo demo``: the whole system on one machine."""

from __future__ import annotations

import click


@click.command()
def dev() -> None:
    """Run the broker and every service as local processes (not yet available)."""
    click.echo("choreo dev: not yet - the reference services are still being built", err=True)
    raise SystemExit(2)


@click.command()
@click.option("--orders", default=100, show_default=True, type=click.IntRange(min=1))
@click.option("--seed", default=1, show_default=True, type=int)
@click.option("--json", "as_json", is_flag=True)
def demo(orders: int, seed: int, as_json: bool) -> None:
    """Drive ORDERS orders through the running system and summarise (not yet available)."""
    del orders, seed, as_json
    click.echo("choreo demo: not yet - the reference services are still being built", err=True)
    raise SystemExit(2)
