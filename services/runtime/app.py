"""What a deployable service is to the runtime: a factory that builds an app from a Runtime."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Protocol

from events import ConfigurationError, KafkaSettings, Middleware, Service

SERVICES_GROUP = "choreokit.services"
DATA_DIR_ENV = "CHOREO_DATA_DIR"


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
    """

    name: str
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    middlewares: tuple[Middleware, ...] = ()
    data_dir: Path = field(default_factory=lambda: Path(os.environ.get(DATA_DIR_ENV, ".choreo")))

    def prepare(self, service: Service) -> Service:
        """Give ``service`` the runtime's middlewares; return it."""
        service.use(*self.middlewares)
        return service

    def sqlite_url(self, stem: str) -> str:
        """A SQLite URL for ``stem`` under :attr:`data_dir` (created if needed)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite+aiosqlite:///{(self.data_dir / f'{stem}.sqlite3').resolve()}"


Factory = Callable[[Runtime], App]


def service_names() -> Sequence[str]:
    """Every service ``choreo run`` knows, from the ``choreokit.services`` entry points."""
    return sorted({ep.name for ep in entry_points(group=SERVICES_GROUP)})


def load_factory(name: str) -> Factory:
    """Return the factory of service ``name``.

    Raises:
        ConfigurationError: No service of that name is installed.
    """
    for ep in entry_points(group=SERVICES_GROUP):
        if ep.name == name:
            factory = ep.load()
            if not callable(factory):
                raise ConfigurationError(f"entry point {ep.value} is not callable")
            return factory  # type: ignore[no-any-return]
    known = ", ".join(service_names()) or "none"
    raise ConfigurationError(f"no service named {name!r} (known: {known})")


class ServiceApp:
    """An :class:`App` made of event-layer services only (most reference services)."""

    def __init__(self, *services: Service) -> None:
        self.services = services

    async def run(self, stop: asyncio.Event) -> None:
        """Start every service, wait for ``stop``, stop them in reverse order."""
        started: list[Service] = []
        try:
            for service in self.services:
                await service.start()
                started.append(service)
            await stop.wait()
        finally:
            for service in reversed(started):
                await service.stop()
