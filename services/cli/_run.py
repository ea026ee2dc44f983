"""``choreo run SERVICE``: one service in the foreground, as a container runs it."""

from __future__ import annotations

import asyncio
import logging
import signal

import click

logger = logging.getLogger("choreokit.run")


class _ListsServices(click.Command):
    """Lists the installed services under the help text, looked up only when help is shown."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:  # noqa: ARG002 - click's signature
        from services.runtime.app import service_names

        formatter.write_paragraph()
        formatter.write_text(f"Services: {', '.join(service_names()) or 'none installed'}.")


@click.command(cls=_ListsServices)
@click.argument("service")
def run(service: str) -> None:
    """Run one SERVICE until SIGTERM or Ctrl-C (what a container runs).

    Services are found through the 'choreokit.services' entry points; 'choreo
    run --help' lists them below. Configuration comes from the environment
    (CHOREO_KAFKA_*, CHOREO_PROFILE, OTEL_*, CHOREO_LOG_FORMAT=text|json, and each
    service's own).
    """
    from events import ChoreoError, KafkaSettings
    from services.runtime.app import Runtime, load_factory
    from tracing import configure, configure_logging

    level = logging.getLogger().level
    try:
        # Log lines name their trace, span and flow; CHOREO_LOG_FORMAT=json writes JSON lines.
        configure_logging(service, level=min(level, logging.INFO) if level else logging.INFO)
        factory = load_factory(service)
        telemetry = configure(service)
    except ChoreoError as exc:
        raise click.UsageError(str(exc)) from None
    runtime = Runtime(name=service, kafka=KafkaSettings(), middlewares=telemetry.middlewares)

    async def main() -> None:
        app = factory(runtime)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        logger.info("running %s (SIGTERM or Ctrl-C stops it)", service)
        await app.run(stop)
        logger.info("%s stopped", service)

    try:
        asyncio.run(main())
    except ChoreoError as exc:
        click.echo(f"error: {service}: {exc}", err=True)
        raise SystemExit(1) from None
    finally:
        telemetry.shutdown()
