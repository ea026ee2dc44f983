"""The HTTP edge's abuse limits, on a real uvicorn server over real sockets.

Slow heads are cut, slow bodies answered 408, connections beyond the limit 503,
and normal requests (keep-alive included) still served. These also pin the
uvicorn internals ``choreokit.services.runtime.limits`` leans on: an upgrade
that changes them fails here.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI, Request

from choreokit.services.runtime import free_port
from choreokit.services.runtime.http import install_problem_handlers, serve
from choreokit.services.runtime.limits import ConnectionLimits

LIMITS = ConnectionLimits(header_timeout=0.5, body_timeout=0.5, max_connections=3, keep_alive=5)


def app() -> FastAPI:
    api = FastAPI()
    install_problem_handlers(api)

    @api.get("/hello")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    @api.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    return api


@contextlib.asynccontextmanager
async def served(limits: ConnectionLimits = LIMITS) -> AsyncIterator[int]:
    port = free_port()
    stop = asyncio.Event()
    task = asyncio.ensure_future(serve(app(), stop, host="127.0.0.1", port=port, limits=limits))
    deadline = time.monotonic() + 20
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if task.done() or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)  # noqa: sleep-ok - polls the port until it listens
            continue
        writer.close()
        break
    try:
        yield port
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


async def read_until_closed(reader: asyncio.StreamReader, timeout: float) -> bytes:
    chunks = []
    while chunk := await asyncio.wait_for(reader.read(65536), timeout):
        chunks.append(chunk)
    return b"".join(chunks)


async def test_a_request_head_that_trickles_in_is_cut_off() -> None:
    async with served() as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        started = time.monotonic()
        writer.write(b"GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        await writer.drain()
        answer = await read_until_closed(reader, timeout=10)
        elapsed = time.monotonic() - started
        assert answer == b"", "closed without an answer"
        assert 0.4 <= elapsed < 5, elapsed
        writer.close()


async def test_an_idle_connection_after_a_response_is_cut_off_too() -> None:
    async with served() as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 200")
        length = int(
            next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")).split(
                b":"
            )[1]
        )
        await reader.readexactly(length)
        writer.write(b"GET /hello HTTP/1.1\r\nHo")  # the next head never completes
        await writer.drain()
        started = time.monotonic()
        assert await read_until_closed(reader, timeout=10) == b""
        assert time.monotonic() - started < 5
        writer.close()


async def test_a_body_that_does_not_arrive_in_time_is_answered_408() -> None:
    async with served() as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n" + b"x" * 10
        )
        await writer.drain()
        answer = await read_until_closed(reader, timeout=10)
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert b"application/problem+json" in answer
        writer.close()


async def test_normal_requests_and_keep_alive_are_served() -> None:
    import httpx

    async with served() as port, httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        for _ in range(3):  # one kept-alive connection, several requests
            assert (await client.get("/hello")).json() == {"hello": "world"}
        posted = await client.post("/echo", content=b"y" * 50_000)
        assert posted.json() == {"bytes": 50_000}


async def test_connections_beyond_the_limit_are_answered_503() -> None:
    import httpx

    limits = ConnectionLimits(header_timeout=5, body_timeout=5, max_connections=2)
    async with served(limits) as port:
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                deadline = time.monotonic() + 10
                while (await client.get("/hello")).status_code != 503:
                    assert time.monotonic() < deadline, "never refused"
                    await asyncio.sleep(0.05)  # noqa: sleep-ok - the server counts the idle ones
        finally:
            for sock in idle:
                sock.close()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            deadline = time.monotonic() + 10
            while (await client.get("/hello")).status_code != 200:
                assert time.monotonic() < deadline, "never served again"
                await asyncio.sleep(0.05)  # noqa: sleep-ok - the server notices the closes


@pytest.mark.parametrize("size", [20_000, 64_000])
async def test_an_oversized_head_is_refused(size: int) -> None:
    async with served() as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * size + b"\r\n\r\n"
        )
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        answer = await read_until_closed(reader, timeout=10)
        assert answer == b"" or answer.startswith((b"HTTP/1.1 431", b"HTTP/1.1 400")), answer[:100]
        writer.close()
