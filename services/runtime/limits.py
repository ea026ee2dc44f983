"""Abuse limits at the HTTP edge: slow senders, endless bodies, too many connections.

uvicorn bounds a request head's size but not the time it may take to arrive,
nor a body's: a client that sends one header byte every few seconds holds a
connection (and a worker's memory) for ever. :func:`server_config` builds the
``uvicorn.Config`` every choreokit HTTP app serves with:

* the request line and headers must arrive within ``header_timeout`` of the
  connection opening (or of the previous response): else the connection is
  closed without an answer;
* the body must arrive within ``body_timeout`` of the head: else 408;
* at most ``max_connections`` connections and requests at once: more are
  answered 503 (uvicorn's ``limit_concurrency``);
* heads above 16 KiB are refused (431);
* an answer's head and body leave in one write (:mod:`~choreokit.services.runtime.writes`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import uvicorn
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from choreokit.services.runtime.problems import problem
from choreokit.services.runtime.writes import coalesce_answers

MAX_HEAD_BYTES = 16 * 1024
"""Largest request line plus headers h11 buffers."""


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """How long and how many: the HTTP edge's bounds.

    Args:
        header_timeout: Seconds for a request's head to arrive.
        body_timeout: Seconds for its body to arrive, from the end of the head.
        max_connections: Connections and in-flight requests at once; more get 503.
        keep_alive: Seconds an idle keep-alive connection stays open.
    """

    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = 1024
    keep_alive: float = 5.0


def server_config(
    app: ASGIApp,
    *,
    host: str,
    port: int,
    limits: ConnectionLimits | None = None,
    **options: Any,
) -> uvicorn.Config:
    """A ``uvicorn.Config`` for ``app`` with ``limits`` (default: :class:`ConnectionLimits`).

    ``options`` go to ``uvicorn.Config`` as they are (``fd``, ``log_level``, ...).
    """
    limits = limits or ConnectionLimits()
    options.setdefault("log_level", "warning")
    options.setdefault("access_log", False)
    options.setdefault("lifespan", "off")
    config = uvicorn.Config(
        BodyTimeout(app, timeout=limits.body_timeout),
        host=host,
        port=port,
        http=_head_timeout_protocol(limits.header_timeout),
        limit_concurrency=limits.max_connections,
        timeout_keep_alive=int(max(1, limits.keep_alive)),
        h11_max_incomplete_event_size=MAX_HEAD_BYTES,
        **options,
    )
    coalesce_answers(config)  # head and body of each answer in one write
    return config


def _head_timeout_protocol(timeout: float) -> type[H11Protocol]:
    """Uvicorn's h11 protocol, closing connections whose next request head is late.

    This leans on uvicorn's ``H11Protocol`` (``connection_made``,
    ``on_response_complete``, ``connection_lost``, ``cycle``, ``loop``,
    ``transport``); ``tests/integration/test_http_limits.py`` fails if an
    upgrade changes them.
    """

    class HeadTimeoutProtocol(H11Protocol):
        _head_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            if not self.transport.is_closing():
                self._head_timer = self.loop.call_later(timeout, self._head_expired)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_expired(self) -> None:
            self._head_timer = None
            cycle = self.cycle
            waiting_for_head = cycle is None or cycle.response_complete
            if waiting_for_head and not self.transport.is_closing():
                self.transport.close()

    return HeadTimeoutProtocol


class BodyTimeout:
    """Answers 408 when a request's body has not arrived within ``timeout`` seconds.

    Also answers 431 to a head above :data:`MAX_HEAD_BYTES` (h11 bounds only a head
    still arriving, not one that came in a single read).
    """

    def __init__(self, app: ASGIApp, *, timeout: float) -> None:
        self._app = app
        self._timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, with a deadline on its body."""
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        head = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
        head += sum(len(name) + len(value) + 4 for name, value in scope.get("headers", ()))
        if head > MAX_HEAD_BYTES:
            await _problem(
                431,
                "Request Header Fields Too Large",
                f"the request line and headers may be at most {MAX_HEAD_BYTES} bytes",
            )(scope, _nothing, send)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        complete = False

        async def timed() -> Message:
            nonlocal complete
            if complete:  # after the body: waiting for a disconnect is not bounded here
                return await receive()
            remaining = max(0.0, deadline - loop.time())
            try:
                message = await asyncio.wait_for(receive(), remaining)
            except TimeoutError:
                raise _BodyTimeoutError(
                    408, f"the body did not arrive within {self._timeout:g}s"
                ) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                complete = True
            return message

        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self._app(scope, timed, watch)
        except _BodyTimeoutError as exc:
            if not started:
                response = _problem(408, "Request Timeout", str(exc.detail))
                await response(scope, _nothing, send)


class _BodyTimeoutError(HTTPException):
    pass


def _problem(status: int, title: str, detail: str) -> JSONResponse:
    return problem(status, title, detail, headers={"Connection": "close"})


async def _nothing() -> Message:
    return {"type": "http.disconnect"}
