"""The fault tests' TCP proxy (tests/rig/tcp_proxy.py) against an echo server on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

from tests.rig.tcp_proxy import Mode, TcpProxy
from tests.support import wait_for

QUIET = 0.3
"""How long a stalled connection is watched for a byte that must not come."""


@pytest.fixture
async def echo() -> AsyncIterator[int]:
    """An echo server's port: every byte it reads is written back."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(1024):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    yield int(server.sockets[0].getsockname()[1])
    server.close()
    await server.wait_closed()


@pytest.fixture
def proxy(echo: int) -> Iterator[TcpProxy]:
    with TcpProxy(2) as running:
        running.route(0, "127.0.0.1", echo)
        yield running


async def roundtrip(port: int, data: bytes = b"ping") -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.readexactly(len(data)), 5)
    finally:
        writer.close()


async def test_bytes_flow_both_ways_through_each_listening_port(proxy: TcpProxy) -> None:
    assert len(proxy.ports) == 2
    assert proxy.bootstrap == ",".join(f"127.0.0.1:{p}" for p in proxy.ports)
    assert await roundtrip(proxy.ports[0], b"x" * 200_000) == b"x" * 200_000


async def test_a_cut_resets_live_connections_and_refuses_new_ones_until_healed(
    proxy: TcpProxy,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.ports[0])
    writer.write(b"a")
    assert await reader.readexactly(1) == b"a"
    await wait_for(lambda: proxy.connections == 1, what="the connection to be proxied")

    proxy.cut()
    assert proxy.mode is Mode.CUT
    with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
        await asyncio.wait_for(reader.readexactly(1), 5)
    writer.close()
    assert proxy.connections == 0
    with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
        await roundtrip(proxy.ports[0])
    assert proxy.resets == 2  # the live one, and the new one refused

    proxy.heal()
    assert await roundtrip(proxy.ports[0]) == b"ping"


async def test_a_stall_holds_every_byte_without_closing_until_healed(proxy: TcpProxy) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.ports[0])
    await wait_for(lambda: proxy.connections == 1, what="the connection to be proxied")
    proxy.stall()
    writer.write(b"held")
    await writer.drain()
    with pytest.raises(TimeoutError):  # nothing comes back, and nothing is closed either
        await asyncio.wait_for(reader.readexactly(1), QUIET)
    assert proxy.connections == 1
    late_reader, late_writer = await asyncio.open_connection("127.0.0.1", proxy.ports[0])
    late_writer.write(b"new")  # a new connection is accepted, but forwards nothing either
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(late_reader.readexactly(1), QUIET)

    proxy.heal()
    assert await asyncio.wait_for(reader.readexactly(4), 5) == b"held"
    assert await asyncio.wait_for(late_reader.readexactly(3), 5) == b"new"
    writer.close()
    late_writer.close()


async def test_a_port_without_an_upstream_resets_the_client(proxy: TcpProxy) -> None:
    with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
        await roundtrip(proxy.ports[1])  # no upstream named
    proxy.route(1, "127.0.0.1", proxy.ports[0])  # a chain through the first port works
    assert await roundtrip(proxy.ports[1]) == b"ping"


def test_the_proxy_forwards_to_loopback_only_and_needs_an_upstream() -> None:
    with pytest.raises(ValueError, match="at least one upstream"):
        TcpProxy(0)
    with TcpProxy() as proxy, pytest.raises(ValueError, match="loopback only"):
        proxy.route(0, "10.0.0.1", 9092)
    with pytest.raises(RuntimeError, match="start the proxy first"):
        TcpProxy().cut()
