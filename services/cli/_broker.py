"""``choreo broker``: the embedded broker in the foreground."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType

import click

from choreokit.events import EmbeddedBrokerError


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=9092, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--log",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Append the broker's own output to this file (default: discard).",
)
def broker(host: str, port: int, log: Path | None) -> None:
    """Run the embedded Kafka-compatible broker (Tansu, memory only) until Ctrl-C.

    Everything it holds is lost when it stops. It has no idempotent producer and
    no transactions; services detect that and turn idempotence off.
    """
    from choreokit.services.runtime import EmbeddedBroker

    embedded = EmbeddedBroker(host, port, log=log)
    stopping = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        embedded.start()
    except EmbeddedBrokerError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(1) from None
    click.echo(f"embedded broker listening on {embedded.bootstrap} (Ctrl-C stops it)", err=True)

    def watch() -> None:
        embedded.wait()
        stopping.set()

    exited = threading.Thread(target=watch, daemon=True)
    exited.start()
    stopping.wait()
    crashed = embedded.pid is not None and not exited.is_alive()
    embedded.stop()
    if crashed:
        click.echo("error: the embedded broker exited unexpectedly", err=True)
        raise SystemExit(1)
    click.echo("embedded broker stopped", err=True)
