"""Every choreokit HTTP app's answers (the gateway's, the observer's) leave in one write:
uvicorn's h11 protocol over a recording transport, the protocol class ``server_config``
gives them."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.responses import Response
from uvicorn.server import ServerState

from choreokit.services.runtime.limits import server_config
from choreokit.services.runtime.writes import CoalescingTransport


class Recording(asyncio.Transport):
    """A transport that keeps what is written (each call apart) and whether it was closed."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.written = asyncio.Event()
        self.closed = False

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))
        self.written.set()

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 5000), "sockname": ("127.0.0.1", 8081)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


async def answer(scope: Any, receive: Any, send: Any) -> None:
    await Response(b'{"ids":["a"]}', status_code=202, media_type="application/json")(
        scope, receive, send
    )


async def test_an_answer_s_head_and_body_go_out_in_one_write() -> None:
    """Without the coalescing protocol uvicorn writes the head and the body apart (two
    segments, two wake-ups of the client per request)."""
    config = server_config(answer, host="127.0.0.1", port=0)
    config.load()
    protocol = config.http_protocol_class(  # type: ignore[call-arg]
        config=config, server_state=ServerState(), app_state={}
    )
    transport = Recording()
    protocol.connection_made(transport)
    protocol.data_received(b"GET /events HTTP/1.1\r\nHost: gateway\r\n\r\n")
    await asyncio.wait_for(transport.written.wait(), 5)
    assert len(transport.writes) == 1
    assert transport.writes[0].startswith(b"HTTP/1.1 202 ")
    assert transport.writes[0].endswith(b'\r\n\r\n{"ids":["a"]}')
    protocol.connection_lost(None)


async def test_closing_writes_what_is_pending_first() -> None:
    inner = Recording()
    transport = CoalescingTransport(inner, asyncio.get_running_loop())
    transport.write(b"head")
    transport.write(b"")
    transport.write(b"body")
    assert inner.writes == []
    transport.close()
    assert inner.writes == [b"headbody"]
    assert inner.closed
