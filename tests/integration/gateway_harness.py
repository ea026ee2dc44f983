"""Running a real gateway for tests: in this process (uvicorn on a free port) or as `choreo run`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from opentelemetry.trace import TracerProvider

from choreokit.events import KafkaSettings, Registry
from choreokit.services.gateway import ApiKey, GatewayApp, GatewaySettings, KeyStore, mint_key
from choreokit.services.gateway._keys import entry_document
from choreokit.services.runtime import free_port
from tests.support import unique, wait_for, wait_until

CHOREO = str(Path(sys.executable).with_name("choreo"))


@dataclass(frozen=True)
class Key:
    """A minted key: its entry for the gateway and the header a client sends."""

    entry: ApiKey
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def key(
    key_id: str = "acme",
    *,
    types: Sequence[str] = ("*",),
    sources: Sequence[str] = ("*",),
    trusted: bool = False,
    rate: float | None = None,
    burst: int | None = None,
) -> Key:
    minted = mint_key(key_id, types=types, sources=sources, trusted=trusted, rate=rate, burst=burst)
    return Key(minted.entry, minted.token)


@contextlib.asynccontextmanager
async def running_gateway(
    kafka: KafkaSettings,
    *,
    registry: Registry,
    keys: Sequence[Key],
    tracer_provider: TracerProvider | None = None,
    wait_for_kafka: bool = True,
    **settings: Any,
) -> AsyncIterator[GatewayApp]:
    """A gateway served from this process on a free port, stopped on exit."""
    app = GatewayApp(
        GatewaySettings(port=0, **settings),
        kafka=kafka,
        name=unique("gateway-"),
        registry=registry,
        keys=KeyStore(k.entry for k in keys),
        tracer_provider=tracer_provider,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(app.run(stop))
    try:
        await wait_for(lambda: app.listening.is_set() or task.done(), what="the gateway to listen")
        if task.done():
            task.result()
        if wait_for_kafka:
            await wait_healthy(app.url)
        yield app
    finally:
        stop.set()
        await task


async def wait_healthy(url: str, *, healthy: bool = True, timeout: float = 30.0) -> None:
    """Wait until /healthz says the broker answers (``healthy=False``: that it does not)."""
    async with httpx.AsyncClient(base_url=url) as client:
        deadline = asyncio.get_running_loop().time() + timeout
        while ((await client.get("/healthz")).status_code == 200) != healthy:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"/healthz did not turn {healthy=} within {timeout}s")
            await asyncio.sleep(0.05)  # noqa: sleep-ok - polls /healthz between checks


def binary_headers(
    event_type: str,
    event_id: str,
    *,
    version: int | None = None,
    source: str = "/partners/acme",
    **extra: str,
) -> dict[str, str]:
    """Headers of a binary-mode request (``extra``: more ``ce-`` attributes by name)."""
    headers = {
        "Content-Type": "application/json",
        "ce-specversion": "1.0",
        "ce-id": event_id,
        "ce-source": source,
        "ce-type": event_type,
    }
    if version is not None:
        headers["ce-dataversion"] = str(version)
    headers.update({f"ce-{name}": value for name, value in extra.items()})
    return headers


def structured(
    event_type: str,
    event_id: str,
    data: Any,
    *,
    version: int | None = None,
    source: str = "/partners/acme",
    **extra: Any,
) -> dict[str, Any]:
    """A structured-mode event document."""
    doc: dict[str, Any] = {
        "specversion": "1.0",
        "id": event_id,
        "source": source,
        "type": event_type,
    }
    if version is not None:
        doc["dataversion"] = str(version)
    doc.update(extra)
    doc["data"] = data
    return doc


@dataclass
class GatewayProcess:
    """`choreo run gateway` in a subprocess."""

    process: subprocess.Popen[str]
    url: str
    log: Path

    def rss_kib(self) -> int:
        """Resident memory now."""
        return self._status("VmRSS")

    def peak_rss_kib(self) -> int:
        """The most resident memory the process ever had (its high-water mark)."""
        return self._status("VmHWM")

    def _status(self, field: str) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
        raise AssertionError(f"no {field} in /proc/<pid>/status")


@dataclass(frozen=True)
class EventModule:
    """A module of events on topics of one test's own, for a gateway in another process."""

    env: dict[str, str]
    event_type: str
    topic: str

    def event(self, event_id: str, text: str = "hello") -> dict[str, Any]:
        return structured(self.event_type, event_id, {"text": text})


def event_module(tmp: Path) -> EventModule:
    """Write a module declaring ``<topic>.noted`` v1 and point ``CHOREO_EVENT_MODULES`` at it."""
    name, topic = unique("gateway_events_"), unique("gw")
    (tmp / f"{name}.py").write_text(
        "from events import Event\n\n\n"
        f"class Noted(Event, type='{topic}.noted', version=1, topic='{topic}'):\n"
        "    text: str\n"
    )
    env = {
        "CHOREO_EVENT_MODULES": name,
        "PYTHONPATH": os.pathsep.join([str(tmp), os.environ.get("PYTHONPATH", "")]),
    }
    return EventModule(env, f"{topic}.noted", topic)


@contextlib.contextmanager
def gateway_process(
    bootstrap: str,
    keys: Sequence[Key],
    tmp: Path,
    *,
    keys_in: str = "file",
    **env: str,
) -> Iterator[GatewayProcess]:
    """`choreo run gateway` on a free port, its keys in a file (``keys_in``: "env", "none").

    Stopped with SIGTERM on exit.
    """
    document = json.dumps({"keys": [entry_document(k.entry) for k in keys]})
    port = free_port()
    environment = {
        **os.environ,
        "CHOREO_KAFKA_BOOTSTRAP": bootstrap,
        "CHOREO_GATEWAY_PORT": str(port),
        "CHOREO_DATA_DIR": str(tmp / "data"),
        **env,
    }
    if keys_in == "file":
        keys_file = tmp / f"gateway-keys-{port}.json"
        keys_file.write_text(document)
        environment["CHOREO_GATEWAY_KEYS_FILE"] = str(keys_file)
    elif keys_in == "env":
        environment["CHOREO_GATEWAY_KEYS"] = document
    log = tmp / f"gateway-{port}.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [CHOREO, "run", "gateway"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=environment,
            text=True,
        )
    running = GatewayProcess(process, f"http://127.0.0.1:{port}", log)
    try:

        def healthy() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"the gateway exited: {log.read_text()}")
            try:
                return httpx.get(f"{running.url}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(healthy, timeout=60, what="the gateway process to be healthy")
        yield running
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def raw_post(
    url: str,
    headers: Sequence[tuple[str, str]],
    chunks: Sequence[bytes],
    *,
    path: str = "/events",
) -> RawResponse:
    """POST ``chunks`` with chunked transfer encoding (no Content-Length) over a bare socket.

    The body is written while the response is read, so an answer the server
    gives before the body ends (413) is seen even if it then stops reading.
    """
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    head = [f"POST {path} HTTP/1.1", f"Host: {host}", "Transfer-Encoding: chunked"]
    head += [f"{name}: {value}" for name, value in headers]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode())

    async def send_body() -> None:
        with contextlib.suppress(ConnectionError):
            for chunk in chunks:
                writer.write(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                await writer.drain()
            writer.write(b"0\r\n\r\n")
            await writer.drain()

    sender = asyncio.create_task(send_body())
    try:
        status_line = await asyncio.wait_for(reader.readline(), 30)
        status = int(status_line.split()[1])
        response_headers: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            response_headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(response_headers.get("content-length", "0")))
    finally:
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    return RawResponse(status, response_headers, body)


def ids_of(records: Sequence[Any]) -> list[str]:
    """The ``ce_id`` of each record, in order."""
    return [dict(r.headers)["ce_id"].decode() for r in records]
