"""Tracing set-up from the environment (placeholder until the tracing layer lands)."""

from __future__ import annotations

from dataclasses import dataclass

from events import Middleware


@dataclass(frozen=True)
class Telemetry:
    """What tracing gives a service: middlewares to use, and a flush on shutdown."""

    middlewares: tuple[Middleware, ...] = ()

    def shutdown(self) -> None:
        """Flush and stop exporters."""


def configure(service_name: str) -> Telemetry:
    """Configure tracing for ``service_name`` from the ``OTEL_*`` environment."""
    del service_name
    return Telemetry()
