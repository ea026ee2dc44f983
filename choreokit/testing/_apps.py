"""A deployable app's service, driven in memory with the app's own set-up and teardown."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from choreokit.events import ConfigurationError
from choreokit.events.testkit import MemoryLog, ServiceKit
from choreokit.services.runtime.app import ServiceApp


@asynccontextmanager
async def drive(
    app: ServiceApp,
    service: str | None = None,
    *,
    partitions: int = 1,
    real_backoff: bool = False,
    log: MemoryLog | None = None,
) -> AsyncIterator[ServiceKit]:
    """Run ``app``'s set-up (tables, seed data), drive one of its services in memory, tear down.

    What ``choreo run`` would run, minus Kafka and the app's background tasks
    (an outbox relay, an HTTP server): the factory's handlers, middlewares and
    databases as built.

    Example::

        app = create(Runtime(name="notifications", data_dir=tmp_path))
        async with drive(app) as kit:
            handling = await kit.deliver(OrderConfirmed(order_id="o-1", tracking_number="T"))

    Args:
        app: What the service's factory returned.
        service: Which service of the app, by name (default: its only one).
        partitions: Partitions of every topic in the in-memory log.
        real_backoff: Wait the retry policy's backoffs (default: retry at once).
        log: Share a log with other kits (chained services).

    Raises:
        ConfigurationError: The app has no service of that name, or several and
            none was named.
    """
    services = {s.name: s for s in app.services}
    if service is None and len(services) != 1:
        raise ConfigurationError(
            f"the app runs {len(services)} services ({', '.join(services) or 'none'}); "
            "name the one to drive: drive(app, 'name')"
        )
    chosen = services.get(service) if service is not None else app.services[0]
    if chosen is None:
        raise ConfigurationError(
            f"the app has no service {service!r} (it has {', '.join(services) or 'none'})"
        )
    for step in app.setup:
        await step()
    try:
        async with ServiceKit(
            chosen, partitions=partitions, real_backoff=real_backoff, log=log
        ) as kit:
            yield kit
    finally:
        for step in app.teardown:
            await step()
