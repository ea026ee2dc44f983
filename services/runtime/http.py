"""What every HTTP service here shares: problem details, a body limit, health, metrics, serving.

The saga observer, the gateway and the example's order intake all answer
errors with :func:`problem`, health with :func:`health_response`, metrics with
:func:`metrics_response`, and run under :class:`HttpServer`.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable, Generator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from choreokit.events import ConfigurationError, needs_extra

with needs_extra("http", "choreokit.services.runtime.http"):
    import uvicorn
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, PlainTextResponse, Response
    from starlette.exceptions import HTTPException as StarletteHTTPException
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from choreokit.services.runtime.limits import ConnectionLimits, server_config
    from choreokit.services.runtime.problems import problem


def field_errors(exc: RequestValidationError) -> list[dict[str, str]]:
    """Validation errors as ``{"field": "lines.0.quantity", "rule": "greater_than", ...}``."""
    out = []
    for error in exc.errors():
        location = [str(p) for p in error.get("loc", ()) if p != "body"]
        out.append(
            {
                "field": ".".join(location) or "(body)",
                "rule": str(error.get("type", "")),
                "message": str(error.get("msg", "")),
            }
        )
    return out


def install_problem_handlers(app: FastAPI) -> None:
    """Answer HTTP errors and validation failures with problem details."""

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(exc.status_code, _title(exc.status_code), str(exc.detail) or None)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = field_errors(exc)
        if any(e["rule"] in {"json_invalid", "model_attributes_type"} for e in errors):
            return problem(400, "Malformed request", "the body is not the JSON object expected")
        return problem(422, "Invalid request", "see errors", errors=errors)


def _title(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


class BodyLimit:
    """Refuses request bodies over ``limit`` bytes with 413, chunked ones included.

    The body is counted while it streams in; nothing beyond the limit is read.
    """

    def __init__(self, app: ASGIApp, *, limit: int) -> None:
        self._app = app
        self._limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, counting its body."""
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > self._limit:
                await self._refuse(send)
                return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self._limit:
                    # An HTTPException, so that frameworks reading the body pass it on as is.
                    raise _TooLargeError(413, f"the body may be at most {self._limit} bytes")
            return message

        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self._app(scope, counted, watch)
        except _TooLargeError:
            if not started:
                await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        response = problem(413, "Content Too Large", f"the body may be at most {self._limit} bytes")
        await response({"type": "http"}, _no_body, send)


class _TooLargeError(StarletteHTTPException):
    pass


async def _no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


def health_response(
    healthy: bool, *, unhealthy: str = "unavailable", **details: Any
) -> JSONResponse:
    """The ``GET /healthz`` answer: 200 ``{"status": "ok", ...}``, else 503 with ``unhealthy``.

    Args:
        healthy: Whether the service can do its work now.
        unhealthy: The status word when it cannot (``starting``, ``unavailable``).
        details: More members of the body (``kafka``, ``database``, ...).
    """
    body = {"status": "ok" if healthy else unhealthy, **details}
    return JSONResponse(body, status_code=200 if healthy else 503)


def metrics_response(registry: CollectorRegistry) -> PlainTextResponse:
    """The ``GET /metrics`` answer: the registry in Prometheus' text format."""
    return PlainTextResponse(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


def add_health_and_metrics(
    app: FastAPI, registry: CollectorRegistry, ready: Callable[[], bool]
) -> None:
    """``GET /healthz`` (200 once ready, 503 before) and ``GET /metrics`` (Prometheus text)."""

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> JSONResponse:
        return health_response(ready(), unhealthy="starting")

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return metrics_response(registry)


class HttpServer(uvicorn.Server):
    """uvicorn, with an event set once it listens, and without its own signal handling.

    ``choreo run`` owns SIGINT and SIGTERM: they set the app's stop event, and
    the app stops the server (``should_exit``).

    Args:
        config: uvicorn's configuration.
        cannot_bind: What to do when the address cannot be bound, e.g.
            ``"choose another with CHOREO_OBSERVER_PORT"``.
    """

    def __init__(self, config: uvicorn.Config, *, cannot_bind: str = "choose another port") -> None:
        super().__init__(config)
        self.listening = asyncio.Event()
        self._cannot_bind = cannot_bind

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Bind and start serving; set :attr:`listening` once it does.

        Raises:
            ConfigurationError: The address cannot be bound (uvicorn would exit the process).
        """
        try:
            await super().startup(sockets=sockets)
        except SystemExit:
            config = self.config
            raise ConfigurationError(
                f"cannot listen on {config.host}:{config.port} (in use, or not allowed); "
                f"{self._cannot_bind}"
            ) from None
        if self.started:
            self.listening.set()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        """Leave the process's signals alone."""
        yield


async def serve(
    app: ASGIApp,
    stop: asyncio.Event,
    *,
    host: str,
    port: int,
    limits: ConnectionLimits | None = None,
) -> None:
    """Serve ``app`` until ``stop`` is set, then finish in-flight requests and return.

    ``limits`` bound slow senders and connections (defaults: :class:`ConnectionLimits`).
    """
    server = HttpServer(server_config(app, host=host, port=port, limits=limits))
    serving = asyncio.ensure_future(server.serve())
    stopping = asyncio.ensure_future(stop.wait())
    done, _ = await asyncio.wait([serving, stopping], return_when=asyncio.FIRST_COMPLETED)
    server.should_exit = True
    stopping.cancel()
    await serving
    if serving in done and not stop.is_set():
        raise RuntimeError(f"the HTTP server on {host}:{port} stopped by itself (port in use?)")
