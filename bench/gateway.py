"""Gateway throughput and latency against a bare FastAPI endpoint that only publishes.

Starts an embedded broker, the gateway (`choreo run gateway`, validating and
publishing order.placed v2) and the baseline (bench/bare_publisher.py), each
its own process, then drives each with N concurrent HTTP/1.1 keep-alive
connections (a minimal client on asyncio streams, in this process: httpx costs
more CPU per request than the servers it measures) for a fixed time: single events
(binary mode) and batches
(structured, 10 events each). Prints requests/s, events/s and latency
percentiles per scenario.

    .venv/bin/python -m bench.gateway [--seconds 10] [--concurrency 16] [--batch 10] [--json]

One run, one machine: the load generator shares the CPU with the servers and the
broker, so compare the rows with each other, not with other machines.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from choreokit.services.gateway import mint_key
from choreokit.services.gateway._keys import entry_document
from choreokit.services.runtime import EmbeddedBroker, free_port

ROOT = Path(__file__).resolve().parents[1]
CHOREO = str(Path(sys.executable).with_name("choreo"))


def order(n: int) -> dict[str, Any]:
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

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, headers: dict[str, str], body: bytes) -> int:
        if self._reader is None or self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        head = f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Length: {len(body)}\r\n"
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
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(ConnectionError):
                await self._writer.wait_closed()
        self._reader = self._writer = None


@dataclass
class Result:
    target: str
    mode: str
    concurrency: int
    seconds: float
    requests: int
    events: int
    errors: int
    requests_per_s: float
    events_per_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float


async def drive(
    url: str,
    token: str,
    *,
    target: str,
    mode: str,
    batch: int,
    seconds: float,
    warmup: float,
    concurrency: int,
) -> Result:
    latencies: list[float] = []
    errors = 0
    counter = 0
    run_id = f"{target}-{mode}-{time.monotonic_ns()}"
    auth = {"Authorization": f"Bearer {token}"}

    def request() -> dict[str, Any]:
        nonlocal counter
        counter += 1
        if mode == "single":
            return {
                "headers": {
                    **auth,
                    "Content-Type": "application/json",
                    "ce-specversion": "1.0",
                    "ce-id": f"{run_id}-{counter}",
                    "ce-source": "/bench",
                    "ce-type": "order.placed",
                    "ce-dataversion": "2",
                },
                "content": json.dumps(order(counter)).encode(),
            }
        events = [
            {
                "specversion": "1.0",
                "id": f"{run_id}-{counter}-{i}",
                "source": "/bench",
                "type": "order.placed",
                "dataversion": "2",
                "data": order(counter * batch + i),
            }
            for i in range(batch)
        ]
        return {
            "headers": {**auth, "Content-Type": "application/cloudevents-batch+json"},
            "content": json.dumps(events).encode(),
        }

    host, port = url.removeprefix("http://").split(":")
    start = time.perf_counter()
    measure_from = start + warmup
    stop_at = measure_from + seconds

    async def worker() -> None:
        nonlocal errors
        connection = Connection(host, int(port))
        try:
            while time.perf_counter() < stop_at:
                call = request()
                began = time.perf_counter()
                status = await connection.post("/events", call["headers"], call["content"])
                took = time.perf_counter() - began
                if began >= measure_from:
                    if status == 202:
                        latencies.append(took)
                    else:
                        errors += 1
        finally:
            await connection.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    done = len(latencies)
    ordered = sorted(latencies)
    per_request = 1 if mode == "single" else batch
    return Result(
        target=target,
        mode=mode if mode == "single" else f"batch of {batch}",
        concurrency=concurrency,
        seconds=seconds,
        requests=done,
        events=done * per_request,
        errors=errors,
        requests_per_s=done / seconds,
        events_per_s=done * per_request / seconds,
        p50_ms=statistics.median(ordered) * 1000 if ordered else 0.0,
        p99_ms=ordered[int(len(ordered) * 0.99) - 1] * 1000 if ordered else 0.0,
        max_ms=ordered[-1] * 1000 if ordered else 0.0,
    )


def wait_healthy(url: str, path: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{url} exited:\n{log.read_text()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url + path, timeout=2).status_code < 500:
                return
        time.sleep(0.1)
    raise SystemExit(f"{url} did not come up:\n{log.read_text()}")


@contextlib.contextmanager
def serve(command: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, env={**os.environ, **env}, stdout=out, stderr=out, cwd=ROOT
        )
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def table(results: list[Result]) -> str:
    lines = [
        "| target | requests | concurrency | requests/s | events/s | p50 ms | p99 ms | errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r.target} | {r.mode} | {r.concurrency} | {r.requests_per_s:,.0f} | "
        f"{r.events_per_s:,.0f} | {r.p50_ms:.1f} | {r.p99_ms:.1f} | {r.errors} |"
        for r in results
    ]
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> list[Result]:
    minted = mint_key("bench", types=("order.placed",), rate=1e9, burst=1_000_000_000)
    results: list[Result] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        keys = tmp / "keys.json"
        keys.write_text(json.dumps([entry_document(minted.entry)]))
        with EmbeddedBroker(port=free_port(), log=tmp / "tansu.log") as broker:
            gateway_port, bare_port = free_port(), free_port()
            gateway_env = {
                "CHOREO_KAFKA_BOOTSTRAP": broker.bootstrap,
                "CHOREO_GATEWAY_PORT": str(gateway_port),
                "CHOREO_GATEWAY_KEYS_FILE": str(keys),
                "CHOREO_GATEWAY_MAX_BATCH": str(max(100, args.batch)),
                "CHOREO_LOG_LEVEL": "WARNING",
                "CHOREO_DATA_DIR": str(tmp / "data"),
            }
            bare_command = [
                sys.executable,
                "-m",
                "uvicorn",
                "bench.bare_publisher:app",
                "--port",
                str(bare_port),
                "--log-level",
                "warning",
                "--no-access-log",
            ]
            targets = [
                ("gateway", [CHOREO, "run", "gateway"], gateway_env, gateway_port, "/healthz"),
                ("bare FastAPI + aiokafka", bare_command, gateway_env, bare_port, "/docs"),
            ]
            for name, command, env, port, health in targets:
                log = tmp / f"{port}.log"
                with serve(command, env, log) as process:
                    url = f"http://127.0.0.1:{port}"
                    wait_healthy(url, health, process, log)
                    for mode in ("single", "batch"):
                        result = await drive(
                            url,
                            minted.token,
                            target=name,
                            mode=mode,
                            batch=args.batch,
                            seconds=args.seconds,
                            warmup=args.warmup,
                            concurrency=args.concurrency,
                        )
                        results.append(result)
                        print(table([result]).splitlines()[-1], file=sys.stderr)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured time per scenario")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured time first")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent clients")
    parser.add_argument("--batch", type=int, default=10, help="events per batch request")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    results = asyncio.run(main_async(args))
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=2))
        return
    print(
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, embedded broker (Tansu), {args.seconds:g} s per row "
        f"after {args.warmup:g} s warm-up\n"
    )
    print(table(results))


if __name__ == "__main__":
    main()
