"""One write per answer: what the HTTP protocol writes in one loop iteration goes out at once.

Uvicorn's h11 protocol writes an answer's head and its body apart: two
``send`` calls on a socket without Nagle's algorithm, two segments, two
wake-ups of the client. Found on the gateway, whose answers always have a
body (the receipts; the bench's bare endpoint's 202 has none, so the gateway
paid a second write per request that its baseline did not); every choreokit
HTTP app serves with it (:func:`~choreokit.services.runtime.limits.server_config`).

Starlette sends the head and the body without yielding, so the writes made
while one task step runs are joined and written once, on the loop's next
iteration. Closing writes what is pending first. This leans on uvicorn's
``H11Protocol`` (its constructor, ``connection_made`` and the ``transport``
every cycle writes to); ``tests/unit/test_http_writes.py`` fails if that
changes.
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol


class CoalescingTransport(asyncio.Transport):
    """``transport``, with the writes of one loop iteration joined into one."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Queue ``data``; the first write of an iteration schedules the flush."""
        if not data:
            return
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(bytes(data))

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        if pending and not self._transport.is_closing():
            self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self) -> None:
        """Write what is pending, then close."""
        self._flush()
        self._transport.close()

    def abort(self) -> None:
        """Close at once; what is pending is dropped."""
        self._pending.clear()
        self._transport.abort()

    def is_closing(self) -> bool:
        """Whether the transport is closing or closed."""
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """The wrapped transport's (peer name, socket, ...)."""
        return self._transport.get_extra_info(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        """Hand the connection to ``protocol`` (an upgrade), after what is pending."""
        self._flush()
        self._transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        """The protocol reading from the connection."""
        return self._transport.get_protocol()

    def is_reading(self) -> bool:
        """Whether the transport is reading."""
        return self._transport.is_reading()

    def pause_reading(self) -> None:
        """Stop reading (flow control)."""
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        """Read again."""
        self._transport.resume_reading()

    def get_write_buffer_size(self) -> int:
        """Bytes buffered, pending ones included."""
        return self._transport.get_write_buffer_size() + sum(map(len, self._pending))

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        """The wrapped transport's flow-control marks."""
        self._transport.set_write_buffer_limits(high, low)

    def can_write_eof(self) -> bool:
        """Whether the transport can half-close."""
        return self._transport.can_write_eof()

    def write_eof(self) -> None:
        """Write what is pending, then half-close."""
        self._flush()
        self._transport.write_eof()


def coalesce_answers(config: uvicorn.Config) -> None:
    """Make ``config``'s h11 protocol write through a :class:`CoalescingTransport`.

    Raises:
        TypeError: ``config.http`` is not an ``H11Protocol`` class (the runtime's is).
    """
    protocol = config.http
    if not (isinstance(protocol, type) and issubclass(protocol, H11Protocol)):
        raise TypeError(f"expected an H11Protocol class as the http protocol, not {protocol!r}")

    class CoalescingProtocol(protocol):  # type: ignore[valid-type,misc]  # a class made at run time
        def connection_made(self, transport: asyncio.Transport) -> None:
            super().connection_made(CoalescingTransport(transport, asyncio.get_running_loop()))

    config.http = CoalescingProtocol
