"""One service of the multi-process tracing tests (``python -m tests.integration.tracing_hop``).

It handles ``--source-type`` events (field ``marker``) from ``--source`` and, if
``--target`` is given, publishes one ``--target-type`` event per handled one. It
is configured as ``choreo run`` configures a service: ``choreokit.tracing.configure_logging``
and ``choreokit.tracing.configure`` from the environment (``CHOREO_KAFKA_BOOTSTRAP``,
``OTEL_*``, ``CHOREO_LOG_FORMAT``). It prints ``ready`` once consuming and stops
cleanly, flushing its spans, on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from choreokit.events import Event, HandlerContext, Registry, Service
from choreokit.tracing import configure, configure_logging

logger = logging.getLogger("tests.tracing_hop")


def build(args: argparse.Namespace) -> Service:
    registry = Registry()

    class Incoming(Event, type=args.source_type, version=1, topic=args.source, registry=registry):
        marker: str

    outgoing: list[type[Event]] = []
    if args.target:

        class Outgoing(
            Event, type=args.target_type, version=1, topic=args.target, registry=registry
        ):
            marker: str

        outgoing.append(Outgoing)

    service = Service(args.name, registry=registry, publishes=outgoing)

    @service.handler(Incoming)
    async def hop(event: Incoming, ctx: HandlerContext) -> None:
        logger.info("handled %s", ctx.envelope.type)
        for model in outgoing:
            await ctx.publish(model.model_validate({"marker": event.marker}))

    return service


async def run(service: Service) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await service.start()
    print("ready", flush=True)
    try:
        await stop.wait()
    finally:
        await service.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True)
    parser.add_argument("--source", required=True)
    parser.add_argument("--source-type", required=True)
    parser.add_argument("--target")
    parser.add_argument("--target-type")
    args = parser.parse_args()
    configure_logging(args.name, level=logging.INFO)
    telemetry = configure(args.name)
    service = build(args)
    service.use(*telemetry.middlewares)
    try:
        asyncio.run(run(service))
    finally:
        telemetry.shutdown()


if __name__ == "__main__":
    main()
