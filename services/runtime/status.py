"""``/healthz`` and ``/metrics`` for a service without HTTP of its own, on a port of its own."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from pydantic import Field, ValidationError
from pydantic_settings import SettingsConfigDict

from choreokit.events import ConfigurationError, StrictSettings

if TYPE_CHECKING:
    from fastapi import FastAPI

logger = logging.getLogger("choreokit.status")

DEFAULT_PORT = 9464
"""The port OpenTelemetry's Prometheus exporter uses by default."""


class StatusSettings(StrictSettings):
    """``CHOREO_METRICS_*``: where a consumer-only service answers ``/healthz`` and ``/metrics``.

    Another ``CHOREO_METRICS_*`` variable is an error (:class:`~choreokit.events.StrictSettings`).
    """

    model_config = SettingsConfigDict(env_prefix="CHOREO_METRICS_", frozen=True, extra="ignore")

    host: str = "127.0.0.1"
    """``CHOREO_METRICS_HOST``: the interface (``0.0.0.0`` in a container, to be scraped)."""

    port: int | None = Field(default=DEFAULT_PORT, ge=0, le=65535)
    """``CHOREO_METRICS_PORT``: the port; ``0`` picks a free one (logged), ``off`` serves none."""

    @classmethod
    def from_env(cls) -> StatusSettings:
        """Read the environment (``CHOREO_METRICS_PORT=off`` turns the endpoint off).

        Raises:
            ConfigurationError: A variable holds something else than a port or ``off``.
            UnknownSettingError: A ``CHOREO_METRICS_*`` variable names no setting.
        """
        import os

        if os.environ.get("CHOREO_METRICS_PORT", "").strip().lower() in {"off", "none"}:
            return cls(port=None)
        try:
            return cls()
        except ValidationError as exc:
            raise ConfigurationError(
                f"CHOREO_METRICS_PORT must be a port number, 0 (any free port) or 'off': {exc}"
            ) from None


def status_app(registry: CollectorRegistry, ready: Callable[[], bool]) -> FastAPI:
    """The two endpoints: ``GET /healthz`` (200 once ready) and ``GET /metrics``."""
    from fastapi import FastAPI

    from choreokit.services.runtime.http import add_health_and_metrics

    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    add_health_and_metrics(app, registry, ready)
    return app


async def serve_status(
    stop: asyncio.Event,
    *,
    settings: StatusSettings,
    registry: CollectorRegistry,
    ready: Callable[[], bool],
    name: str,
) -> None:
    """Serve ``/healthz`` and ``/metrics`` until ``stop`` is set.

    A port that cannot be bound is logged, saying which variable to change,
    and the service goes on without the endpoint: its Kafka work matters more.
    """
    if settings.port is None:
        return
    import socket

    from choreokit.events.extras import has_extra

    if not has_extra("http"):
        logger.warning(
            "%s serves no /metrics and /healthz: that needs the 'http' extra "
            "(pip install 'choreokit[http]'); set CHOREO_METRICS_PORT=off to silence this",
            name,
        )
        return
    from choreokit.services.runtime.http import serve

    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((settings.host, settings.port))
    except OSError as exc:
        sock.close()
        logger.error(  # noqa: TRY400 - the reason is the message; no traceback needed
            "%s cannot serve /metrics and /healthz on %s:%d (%s); set CHOREO_METRICS_PORT to a "
            "free port, 0 for any, or 'off'",
            name,
            settings.host,
            settings.port,
            exc.strerror,
        )
        return
    host, port = sock.getsockname()[:2]
    sock.close()
    logger.info("%s serves /metrics and /healthz on http://%s:%d", name, host, port)
    await serve(status_app(registry, ready), stop, host=host, port=port)
