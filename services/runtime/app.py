"""What a deployable service is to the runtime: a factory that builds an app from a Runtime."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from prometheus_client import CollectorRegistry

from choreokit.events import (
    ConfigurationError,
    KafkaSettings,
    Middleware,
    Service,
    freeze_startup_heap,
    thaw_heap,
)
from choreokit.services.runtime import discovery
from choreokit.services.runtime.discovery import SERVICES_GROUP
from choreokit.tracing import Metrics

__all__ = [
    "DATA_DIR_ENV",
    "READY_FILE_ENV",
    "SERVICES_GROUP",
    "App",
    "Factory",
    "Runtime",
    "ServiceApp",
    "default_name",
    "load_factory",
    "service_names",
]

DATA_DIR_ENV = "CHOREO_DATA_DIR"
READY_FILE_ENV = "CHOREO_READY_FILE"


class App(Protocol):
    """A running unit of a deployable service (Kafka consumers, an HTTP server, or both)."""

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set, then shut down cleanly and return."""
        ...


@dataclass(frozen=True)
class Runtime:
    """What ``choreo run`` hands to a service factory, read once from the environment.

    Attributes:
        name: The service's name (its consumer group and ``OTEL_SERVICE_NAME``).
        kafka: Kafka settings.
        middlewares: Concerns every :class:`events.Service` of the app must use
            (tracing, logging context); :meth:`prepare` applies them.
        data_dir: Where local state lives when no database URL is configured.
        metrics: The event layer's metrics (``choreo run`` sets them, and puts
            their middleware among :attr:`middlewares`); :meth:`prepare` has
            them read each service's consumer counters, and apps with HTTP of
            their own serve ``metrics.registry`` on their ``/metrics``.
        up: Set by :meth:`mark_ready` (``/healthz`` answers 200 from then on).
    """

    name: str
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    middlewares: tuple[Middleware, ...] = ()
    data_dir: Path = field(default_factory=lambda: Path(os.environ.get(DATA_DIR_ENV, ".choreo")))
    metrics: Metrics | None = None
    up: threading.Event = field(default_factory=threading.Event, compare=False, repr=False)

    def prepare(self, service: Service) -> Service:
        """Give ``service`` the runtime's middlewares, report its counters; return it."""
        service.use(*self.middlewares)
        if self.metrics is not None:
            self.metrics.middleware.observe(service)
        return service

    def prometheus_registry(self) -> CollectorRegistry:
        """The registry an app's own ``/metrics`` serves: the runtime's, with the event metrics."""
        return self.metrics.registry if self.metrics is not None else CollectorRegistry()

    def mark_ready(self) -> None:
        """Say the app is up: write ``$CHOREO_READY_FILE``, if set.

        ``choreo dev`` and ``choreo health`` read it; ``choreo run`` then keeps
        touching it as a heartbeat.
        """
        self.up.set()
        path = os.environ.get(READY_FILE_ENV)
        if path:
            Path(path).write_text(f"{os.getpid()}\n")

    def database_url(self, configured: str | None, stem: str) -> str:
        """``configured`` if set, else a SQLite file named ``stem`` under :attr:`data_dir`."""
        return configured or self.sqlite_url(stem)

    def sqlite_url(self, stem: str) -> str:
        """A SQLite URL for ``stem`` under :attr:`data_dir` (created if needed)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite+aiosqlite:///{(self.data_dir / f'{stem}.sqlite3').resolve()}"


Factory = Callable[[Runtime], App]


def default_name(service: str) -> str:
    """The service name of ``service``: itself, or the top package of ``module:factory``."""
    return service.partition(":")[0].split(".")[0] if ":" in service else service


def service_names() -> Sequence[str]:
    """Every service ``choreo run`` knows: the toolkit's apps, the project's, the example's if on.

    See :mod:`choreokit.services.runtime.discovery` for where a project declares them.
    """
    return sorted(discovery.in_effect().services)


def load_factory(name: str) -> Factory:
    """Return the factory of service ``name``, or of ``module:factory`` (not declared).

    A ``module:factory`` is imported with the project's directory on ``sys.path``.

    Raises:
        ConfigurationError: No service of that name is declared, or the
            ``module:factory`` path does not lead to a callable.
    """
    if ":" in name:
        target = name
    else:
        declared = discovery.in_effect().services
        if name not in declared:
            known = ", ".join(sorted(declared)) or "none"
            if name in discovery.EXAMPLE.services:
                raise ConfigurationError(
                    f"{name!r} is a service of choreokit's example domain, which runs only "
                    f"when asked: set {discovery.EXAMPLE_ENV}=1 (choreo dev and choreo demo "
                    f"do when they run the example; known now: {known})"
                )
            example = ", ".join(discovery.EXAMPLE.services)
            raise ConfigurationError(
                f"no service named {name!r} (known: {known}); declare it under "
                f"[tool.choreokit.services] in pyproject.toml or the {SERVICES_GROUP!r} "
                f"entry points, or name it as MODULE:FACTORY ({discovery.EXAMPLE_ENV}=1 "
                f"adds the example domain's {example})"
            )
        target = declared[name]
    factory = discovery.load_object(target, "service factory")
    if not callable(factory):
        raise ConfigurationError(f"service factory {target!r} is not callable")
    return factory


class ServiceApp:
    """An :class:`App` made of event-layer services and background tasks.

    Args:
        services: Started in order, stopped in reverse.
        setup: Awaited before the services start (create tables, seed data).
        tasks: Run alongside once the services are up (an outbox relay, an HTTP
            server); each gets the stop event and must return once it is set.
        teardown: Awaited after everything stopped (dispose engines).
        on_ready: Called once everything is up.
        serves_http: The app answers ``/healthz`` and ``/metrics`` itself;
            otherwise ``choreo run`` serves them on ``$CHOREO_METRICS_PORT``.
    """

    def __init__(
        self,
        *services: Service,
        setup: Sequence[Callable[[], Awaitable[None]]] = (),
        tasks: Sequence[Callable[[asyncio.Event], Awaitable[None]]] = (),
        teardown: Sequence[Callable[[], Awaitable[None]]] = (),
        on_ready: Callable[[], None] | None = None,
        serves_http: bool = False,
    ) -> None:
        self.services = services
        self.serves_http = serves_http
        self._setup = setup
        self._tasks = tasks
        self._teardown = teardown
        self._on_ready = on_ready

    @property
    def setup(self) -> Sequence[Callable[[], Awaitable[None]]]:
        """The set-up steps, in order (the test kit runs them too)."""
        return self._setup

    @property
    def teardown(self) -> Sequence[Callable[[], Awaitable[None]]]:
        """The teardown steps, in order."""
        return self._teardown

    async def run(self, stop: asyncio.Event) -> None:
        """Set up, start every service and task, wait for ``stop``, shut down in reverse."""
        started: list[Service] = []
        running: list[asyncio.Task[None]] = []
        frozen = False
        try:
            for step in self._setup:
                await step()
            for service in self.services:
                await service.start()
                started.append(service)
            running = [asyncio.ensure_future(task(stop)) for task in self._tasks]
            # Start-up's heap is long-lived: out of the collector's scans while records flow.
            freeze_startup_heap()
            frozen = True
            if self._on_ready is not None:
                self._on_ready()
            waiter = asyncio.ensure_future(stop.wait())
            done, _ = await asyncio.wait([waiter, *running], return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            for task in done:
                if task is not waiter and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        finally:
            stop.set()
            if frozen:
                thaw_heap()
            if running:
                await asyncio.gather(*running, return_exceptions=True)
            for service in reversed(started):
                await service.stop()
            for step in self._teardown:
                await step()
