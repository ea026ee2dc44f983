"""``gateway``: single and batch posts, against a bare FastAPI + aiokafka endpoint.

The gateway (``choreo run gateway``, validating and publishing the example's
``order.placed`` v2) and the baseline (:mod:`._bare_publisher`: publish the
body, answer once acknowledged; no authentication, validation, envelope or
dedup) each run as one uvicorn process. A minimal HTTP/1.1 client on asyncio
streams (httpx costs more CPU per request than the servers it measures) drives
each with N keep-alive connections for a fixed time after a warm-up: single
events (binary mode) and batches (structured, ``application/cloudevents-batch+json``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from choreokit.services.bench._context import Context
from choreokit.services.bench._stats import percentile, ratio, summary

TARGETS = {"gateway": "gateway", "bare": "bare FastAPI + aiokafka"}
MODES = ("single", "batch")


def order(n: int) -> dict[str, Any]:
    """An ``order.placed`` v2 payload."""
    return {
        "order_id": f"o-{n}",
        "customer_id": f"c-{n % 97}",
        "lines": [
            {"sku": "SKU-1", "quantity": 2, "unit_price_cents": 1250},
            {"sku": "SKU-2", "quantity": 1, "unit_price_cents": 990},
        ],
        "ship_to": {"country": "DE", "postal_code": "10115"},
    }


class Connection:
    """One keep-alive HTTP/1.1 connection that POSTs and reads the answer, nothing more."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def post(self, headers: dict[str, str], body: bytes) -> int:
        """POST ``body`` to ``/events``; the status code."""
        if self._reader is None or self._writer is None:
            self._reader, self._writer = await asyncio.open_connection("127.0.0.1", self.port)
        head = f"POST /events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
        head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        self._writer.write(head.encode() + b"\r\n" + body)
        status = int((await self._reader.readline()).split()[1])
        length, closing = 0, False
        while (line := await self._reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
            elif name.lower() == b"connection" and value.strip().lower() == b"close":
                closing = True
        await self._reader.readexactly(length)
        if closing:
            await self.close()
        return status

    async def close(self) -> None:
        """Close the connection (it reopens on the next post)."""
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(ConnectionError):
                await self._writer.wait_closed()
        self._reader = self._writer = None


def _request(
    mode: str, run_id: str, n: int, batch: int, token: str
) -> tuple[dict[str, str], bytes]:
    auth = {"Authorization": f"Bearer {token}"}
    if mode == "single":
        headers = {
            **auth,
            "Content-Type": "application/json",
            "ce-specversion": "1.0",
            "ce-id": f"{run_id}-{n}",
            "ce-source": "/bench",
            "ce-type": "order.placed",
            "ce-dataversion": "2",
        }
        return headers, json.dumps(order(n)).encode()
    events = [
        {
            "specversion": "1.0",
            "id": f"{run_id}-{n}-{i}",
            "source": "/bench",
            "type": "order.placed",
            "dataversion": "2",
            "data": order(n * batch + i),
        }
        for i in range(batch)
    ]
    return {**auth, "Content-Type": "application/cloudevents-batch+json"}, json.dumps(
        events
    ).encode()


async def drive(port: int, token: str, mode: str, ctx: Context) -> dict[str, float]:
    """Drive one target in one mode for the window; rates, latency percentiles, errors."""
    sizes = ctx.sizes
    latencies: list[float] = []
    errors = 0
    counter = 0
    run_id = f"{port}-{mode}-{time.monotonic_ns()}"
    measure_from = time.perf_counter() + sizes.gateway_warmup
    stop_at = measure_from + sizes.gateway_seconds

    async def worker() -> None:
        nonlocal errors, counter
        connection = Connection(port)
        try:
            while time.perf_counter() < stop_at:
                counter += 1
                headers, body = _request(mode, run_id, counter, sizes.gateway_batch, token)
                began = time.perf_counter()
                status = await connection.post(headers, body)
                if began >= measure_from:
                    if status == 202:  # noqa: PLR2004 - Accepted
                        latencies.append(time.perf_counter() - began)
                    else:
                        errors += 1
        finally:
            await connection.close()

    await asyncio.gather(*(worker() for _ in range(sizes.gateway_concurrency)))
    ordered = sorted(latencies)
    per_request = 1 if mode == "single" else sizes.gateway_batch
    seconds = sizes.gateway_seconds
    return {
        "requests_per_s": len(ordered) / seconds,
        "events_per_s": len(ordered) * per_request / seconds,
        "p50_ms": statistics.median(ordered) * 1000 if ordered else 0.0,
        "p99_ms": percentile(ordered, 99) * 1000 if ordered else 0.0,
        "errors": errors,
    }


def run(ctx: Context) -> dict[str, Any]:
    """Start both servers; alternate the (target, mode) windows ``repeat`` times."""
    from choreokit.services.gateway import entry_document, mint_key
    from choreokit.services.runtime import free_port

    minted = mint_key("bench", types=("order.placed",), rate=1e9, burst=1_000_000_000)
    keys = ctx.workdir / "gateway-keys.json"
    keys.write_text(json.dumps([entry_document(minted.entry)]), encoding="utf-8")
    ports = {"gateway": free_port(), "bare": free_port()}
    env = ctx.child_env(
        CHOREO_KAFKA_BOOTSTRAP=ctx.bootstrap,
        CHOREO_EXAMPLE="1",
        CHOREO_GATEWAY_PORT=str(ports["gateway"]),
        CHOREO_GATEWAY_KEYS_FILE=str(keys),
        CHOREO_GATEWAY_MAX_BATCH=str(max(100, ctx.sizes.gateway_batch)),
        CHOREO_LOG_LEVEL="WARNING",
        CHOREO_DATA_DIR=str(ctx.workdir / "gateway-data"),
        BENCH_IDEMPOTENT="1" if ctx.engine == "kafka" else "0",
    )
    commands = {
        "gateway": [sys.executable, "-m", "choreokit.services.cli", "run", "gateway"],
        "bare": [
            sys.executable,
            *("-m", "uvicorn", "choreokit.services.bench._bare_publisher:app"),
            *("--port", str(ports["bare"]), "--log-level", "warning", "--no-access-log"),
        ],
    }
    measured: dict[str, list[dict[str, float]]] = {f"{t}-{m}": [] for t in TARGETS for m in MODES}
    with contextlib.ExitStack() as stack:
        for target, command in commands.items():
            log = ctx.workdir / f"{target}.log"
            process = stack.enter_context(_serve(command, env, log))
            _wait_healthy(
                ports[target], "/healthz" if target == "gateway" else "/docs", process, log
            )
        for rep in range(ctx.repeat):
            for target in TARGETS:
                for mode in MODES:
                    one = asyncio.run(drive(ports[target], minted.token, mode, ctx))
                    measured[f"{target}-{mode}"].append(one)
                    ctx.log(
                        f"  gateway {ctx.engine} {target:7s} {mode:6s} rep {rep + 1}: "
                        f"{one['events_per_s']:8.0f} events/s p99 {one['p99_ms']:6.1f} ms"
                    )
    variants: dict[str, dict[str, Any]] = {
        name: {
            "label": TARGETS[name.partition("-")[0]],
            "mode": "single" if name.endswith("single") else f"batch of {ctx.sizes.gateway_batch}",
            "metrics": {
                metric: summary([one[metric] for one in runs])
                for metric in ("requests_per_s", "events_per_s", "p50_ms", "p99_ms")
            },
            "errors": int(sum(one["errors"] for one in runs)),
        }
        for name, runs in measured.items()
    }

    def events(name: str) -> dict[str, Any]:
        metrics: dict[str, Any] = variants[name]["metrics"]["events_per_s"]
        return metrics

    return {
        "unit": "events/s",
        "concurrency": ctx.sizes.gateway_concurrency,
        "variants": variants,
        "ratios": {
            "single/bare": ratio(events("gateway-single"), events("bare-single")),
            "batch/bare": ratio(events("gateway-batch"), events("bare-batch")),
        },
    }


def _wait_healthy(port: int, path: str, process: subprocess.Popen[bytes], log: Path) -> None:
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"port {port} exited: {log.read_text(encoding='utf-8')[-2000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}{path}", timeout=2).status_code < 500:  # noqa: PLR2004
                return
        time.sleep(0.1)
    raise RuntimeError(f"port {port} did not come up: {log.read_text(encoding='utf-8')[-2000:]}")


@contextlib.contextmanager
def _serve(command: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=out, cwd=Path.cwd())
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
