"""A TCP proxy of ours for fault tests: one listening port per upstream, on loopback only.

Each listening port forwards to one upstream (a Kafka node). The proxy can

- :meth:`TcpProxy.cut` every connection: each live one is reset (RST, as a
  dropped link or a firewall's reject would), and every new one is accepted and
  reset at once, until :meth:`TcpProxy.heal`;
- :meth:`TcpProxy.stall` every connection: connections stay open and new ones
  are accepted, but no byte is forwarded either way (a frozen peer: no RST, no
  answer), until :meth:`TcpProxy.heal`.

Kafka clients connect to the addresses the brokers *advertise*, so a proxy is
only in the path if the brokers advertise its ports
(``KafkaCluster(advertised=...)``). The proxy runs its own event loop in a
thread, so blocking tests and asyncio tests drive it alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import partial
from types import TracebackType
from typing import Any, Self, TypeVar

LOOPBACK = "127.0.0.1"
CHUNK = 64 * 1024

T = TypeVar("T")


class Mode(StrEnum):
    """What the proxy does with the bytes it gets."""

    FLOWING = "flowing"
    CUT = "cut"
    STALLED = "stalled"


@dataclass(eq=False)
class _Link:
    """One proxied connection: the client's and the upstream's writers and the two pipes."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    pipes: list[asyncio.Task[None]] = field(default_factory=list)

    def reset(self) -> None:
        """Close both sides at once with an RST (linger 0), not a FIN."""
        for task in self.pipes:
            task.cancel()
        for writer in (self.client, self.upstream):
            if writer is not None:
                _reset(writer)


def _reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class TcpProxy:
    """Forwards ``127.0.0.1:ports[i]`` to upstream ``i``; cut, stall and heal on demand.

    Args:
        upstreams: How many listening ports (one per upstream).

    The listening ports are bound by :meth:`start`; the upstreams may be named
    then or later by :meth:`route` (a broker must know the proxy's port it
    advertises before it starts, and the proxy must know the broker's port).
    A connection to a port without an upstream is reset.
    """

    def __init__(self, upstreams: int = 1) -> None:
        if upstreams < 1:
            raise ValueError(f"a proxy needs at least one upstream, not {upstreams}")
        self._count = upstreams
        self._upstreams: list[tuple[str, int] | None] = [None] * upstreams
        self._servers: list[asyncio.Server] = []
        self.ports: list[int] = []
        """The listening port of each upstream, once started."""
        self._links: set[_Link] = set()
        self._mode = Mode.FLOWING
        self._flowing: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.accepted = 0
        """Connections accepted so far (reset ones included)."""
        self.resets = 0
        """Connections reset by a cut: live ones and new ones refused during it."""

    @property
    def addresses(self) -> list[str]:
        """``127.0.0.1:port`` of each listening port."""
        return [f"{LOOPBACK}:{port}" for port in self.ports]

    @property
    def bootstrap(self) -> str:
        """The listening addresses, comma-separated, for Kafka clients."""
        return ",".join(self.addresses)

    @property
    def mode(self) -> Mode:
        """Flowing, cut or stalled."""
        return self._mode

    @property
    def connections(self) -> int:
        """Connections open through the proxy now."""
        return self._call(self._count_links())

    def start(self, upstreams: Sequence[tuple[str, int]] | None = None) -> None:
        """Bind the listening ports (free ones on loopback) and start forwarding."""
        if self._loop is not None:
            raise RuntimeError("the proxy is started already")
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="tcp-proxy", daemon=True)
        self._thread.start()
        self._call(self._listen())
        for index, (host, port) in enumerate(upstreams or []):
            self.route(index, host, port)

    def route(self, index: int, host: str, port: int) -> None:
        """Forward listening port ``index``'s new connections to ``host:port`` (loopback only)."""
        if host not in (LOOPBACK, "localhost"):
            raise ValueError(f"the proxy forwards to loopback only, not to {host}")
        self._upstreams[index] = (host, port)

    def cut(self) -> None:
        """Reset every live connection and every new one until :meth:`heal`."""
        self._call(self._set(Mode.CUT))

    def stall(self) -> None:
        """Forward nothing either way (connections stay open) until :meth:`heal`."""
        self._call(self._set(Mode.STALLED))

    def heal(self) -> None:
        """Forward again (after a cut, clients reconnect; after a stall, held bytes flow)."""
        self._call(self._set(Mode.FLOWING))

    def close(self) -> None:
        """Stop listening, reset every connection and stop the proxy's thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        self._call(self._shutdown())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        self._loop = self._thread = None

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._loop is None:
            coro.close()
            raise RuntimeError("start the proxy first")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    async def _listen(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        for index in range(self._count):
            server = await asyncio.start_server(partial(self._serve, index), LOOPBACK, 0)
            self._servers.append(server)
            self.ports.append(int(server.sockets[0].getsockname()[1]))

    async def _count_links(self) -> int:
        return len(self._links)

    async def _set(self, mode: Mode) -> None:
        assert self._flowing is not None
        self._mode = mode
        if mode is Mode.FLOWING:
            self._flowing.set()
            return
        self._flowing.clear()
        if mode is Mode.CUT:
            for link in list(self._links):
                link.reset()
            self.resets += len(self._links)
            self._links.clear()

    async def _shutdown(self) -> None:
        for server in self._servers:
            server.close()
        for link in list(self._links):
            link.reset()
        self._links.clear()
        for server in self._servers:
            await server.wait_closed()

    async def _serve(
        self, index: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.accepted += 1
        upstream = self._upstreams[index]
        if self._mode is Mode.CUT or upstream is None:
            self.resets += self._mode is Mode.CUT
            _reset(writer)
            return
        link = _Link(writer)
        self._links.add(link)
        try:
            up_reader, up_writer = await asyncio.open_connection(*upstream)
        except OSError:
            self._links.discard(link)
            _reset(writer)
            return
        link.upstream = up_writer
        if link not in self._links:  # cut while connecting upstream
            _reset(up_writer)
            return
        link.pipes = [
            asyncio.create_task(self._pipe(reader, up_writer, link)),
            asyncio.create_task(self._pipe(up_reader, writer, link)),
        ]

    async def _pipe(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, link: _Link
    ) -> None:
        assert self._flowing is not None
        try:
            while True:
                data = await source.read(CHUNK)
                await self._flowing.wait()  # a stall holds the bytes (and, by TCP, the sender)
                if not data:
                    break
                sink.write(data)
                await sink.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        # One side ended or failed: end the whole connection, as a real peer's close would.
        if link in self._links:
            self._links.discard(link)
            for writer in (link.client, link.upstream):
                if writer is not None:
                    writer.close()
            for task in link.pipes:
                if task is not asyncio.current_task():
                    task.cancel()

    def __enter__(self) -> Self:
        if self._loop is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
