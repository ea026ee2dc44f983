"""``choreo run SERVICE``: one service in the foreground, as a container runs it."""

from __future__ import annotations

import asyncio
import logging
import signal

import click

logger = logging.getLogger("choreokit.run")


HEARTBEAT_SECONDS = 5.0


async def _heartbeat(stop: asyncio.Event) -> None:
    """Touch the ready file from the event loop while it turns (for ``choreo health``)."""
    import contextlib
    import os
    from pathlib import Path

    from choreokit.services.runtime.app import READY_FILE_ENV

    path = os.environ.get(READY_FILE_ENV)
    while path and not stop.is_set():
        ready = Path(path)
        if ready.exists():  # noqa: ASYNC240 - one stat and touch every few seconds
            ready.touch()  # noqa: ASYNC240
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), HEARTBEAT_SECONDS)


class _ListsServices(click.Command):
    """Lists the installed services under the help text, looked up only when help is shown."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:  # noqa: ARG002 - click's signature
        from choreokit.services.runtime.app import service_names

        formatter.write_paragraph()
        formatter.write_text(f"Services: {', '.join(service_names()) or 'none installed'}.")


@click.command(cls=_ListsServices)
@click.argument("service")
@click.option(
    "--name",
    default=None,
    help="Service name (consumer group, OTEL_SERVICE_NAME) [default: SERVICE, or the top "
    "package of MODULE:FACTORY].",
)
def run(service: str, name: str | None) -> None:
    """Run one SERVICE until SIGTERM or Ctrl-C (what a container runs).

    SERVICE is an installed service (the 'choreokit.services' entry points,
    listed below) or MODULE:FACTORY for one that is not installed (yet).
    Configuration comes from the environment (CHOREO_KAFKA_*, CHOREO_PROFILE,
    OTEL_*, CHOREO_LOG_FORMAT=text|json, and each service's own).
    """
    from choreokit.events import ChoreoError, KafkaSettings
    from choreokit.services.runtime.app import Runtime, default_name, load_factory
    from choreokit.services.runtime.status import StatusSettings, serve_status
    from choreokit.tracing import configure, configure_logging, configure_metrics

    level = logging.getLogger().level
    name = name or default_name(service)
    try:
        # Log lines name their trace, span and flow; CHOREO_LOG_FORMAT=json writes JSON lines.
        configure_logging(name, level=min(level, logging.INFO) if level else logging.INFO)
        factory = load_factory(service)
        telemetry = configure(name)
        status = StatusSettings.from_env()
        kafka = KafkaSettings()
    except ChoreoError as exc:
        raise click.UsageError(str(exc)) from None
    metrics = configure_metrics(name)
    runtime = Runtime(
        name=name,
        kafka=kafka,
        middlewares=(*telemetry.middlewares, metrics.middleware),
        metrics=metrics,
        owns_process=True,
    )

    async def main() -> None:
        app = factory(runtime)
        stop = asyncio.Event()
        serving = None
        if not getattr(app, "serves_http", False):
            # A consumer-only service still answers /healthz and /metrics, on a port of its own.
            serving = asyncio.ensure_future(
                serve_status(
                    stop,
                    settings=status,
                    registry=metrics.registry,
                    ready=lambda: runtime.up.is_set() and _consumers_healthy(app),
                    name=name,
                )
            )
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        logger.info("running %s (SIGTERM or Ctrl-C stops it)", name)
        beating = asyncio.ensure_future(_heartbeat(stop))
        try:
            await app.run(stop)
        finally:
            stop.set()
            beating.cancel()
            if serving is not None:
                await serving
        logger.info("%s stopped", name)

    try:
        asyncio.run(main())
    except ChoreoError as exc:
        click.echo(f"error: {name}: {exc}", err=True)
        raise SystemExit(1) from None
    finally:
        telemetry.shutdown()
        metrics.shutdown()


def _consumers_healthy(app: object) -> bool:
    """Whether every service of ``app`` makes progress (``Service.healthy``), for /healthz."""
    services = getattr(app, "services", ())
    return all(service.healthy() for service in services)
