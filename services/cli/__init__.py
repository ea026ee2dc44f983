"""The ``choreo`` command line."""

from __future__ import annotations

import logging
import sys

import click

from choreokit.services.cli._bench import bench
from choreokit.services.cli._broker import broker
from choreokit.services.cli._dev import demo, dev
from choreokit.services.cli._dlq import dlq
from choreokit.services.cli._gateway import gateway_key
from choreokit.services.cli._health import health
from choreokit.services.cli._observer import observer_token
from choreokit.services.cli._publish import publish
from choreokit.services.cli._run import run
from choreokit.services.cli._sagas import sagas
from choreokit.services.cli._schemas import schemas
from choreokit.services.cli._tail import tail
from choreokit.services.cli._topics import topics

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="choreokit", prog_name="choreo")
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default="WARNING",
    show_default=True,
    envvar="CHOREO_LOG_LEVEL",
    help="Log level of choreokit's own messages (stderr).",
)
def cli(log_level: str) -> None:
    """choreokit: event-driven choreography on Kafka.

    Environment: CHOREO_KAFKA_BOOTSTRAP [127.0.0.1:9092], CHOREO_PROFILE
    [local], CHOREO_DATA_DIR [.choreo], the standard OTEL_* variables, and
    each service's own (docs/services.md, docs/saga-observer.md,
    docs/gateway.md). Start with 'choreo demo' or 'choreo dev'.
    """
    logging.basicConfig(
        level=getattr(logging, log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


for command in (
    broker,
    dev,
    demo,
    run,
    publish,
    tail,
    dlq,
    schemas,
    sagas,
    topics,
    health,
    gateway_key,
    observer_token,
    bench,
):
    cli.add_command(command)


def main() -> None:
    """Entry point of the ``choreo`` console script.

    Whatever a command did not turn into its own one-line answer still gets
    one, never a traceback (``--log-level DEBUG`` shows it).
    """
    try:
        cli.main(prog_name="choreo")
    except Exception as exc:
        if logging.getLogger().getEffectiveLevel() <= logging.DEBUG:
            raise
        click.echo(
            f"error: {type(exc).__name__}: {exc} (unexpected: 'choreo --log-level DEBUG ...' "
            "shows where; please report it)",
            err=True,
        )
        raise SystemExit(1) from None
