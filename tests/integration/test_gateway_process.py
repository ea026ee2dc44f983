"""`choreo run gateway` as a container runs it: configuration errors, shutdown, and memory that
stays flat under a stream of oversized and deeply nested bodies."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from pathlib import Path

import httpx

from choreokit.events import KafkaSettings
from choreokit.services.runtime import free_port
from tests.integration.gateway_harness import (
    CHOREO,
    GatewayProcess,
    Key,
    event_module,
    gateway_process,
    ids_of,
    key,
    raw_post,
)
from tests.integration.kafka_io import all_records

MIB = 1024 * 1024
STRUCTURED = {"Content-Type": "application/cloudevents+json"}


def run_gateway(env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CHOREO, "run", "gateway"],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **env},
        check=False,
    )


def test_in_production_without_keys_the_gateway_refuses_to_start(kafka: KafkaSettings) -> None:
    result = run_gateway(
        {
            "CHOREO_KAFKA_BOOTSTRAP": kafka.bootstrap,
            "CHOREO_GATEWAY_PORT": str(free_port()),
            "CHOREO_PROFILE": "production",
        }
    )
    assert result.returncode == 1
    assert "the gateway has no API keys" in result.stderr
    assert "CHOREO_GATEWAY_KEYS_FILE" in result.stderr


def test_locally_without_keys_a_development_key_is_minted(
    kafka: KafkaSettings, tmp_path: Path
) -> None:
    """So `choreo dev` runs the gateway as is; the token is in the data directory, 0600."""
    module = event_module(tmp_path)
    ready = tmp_path / "gateway.ready"
    with gateway_process(
        kafka.bootstrap,
        [],
        tmp_path,
        keys_in="none",
        CHOREO_PROFILE="local",
        CHOREO_READY_FILE=str(ready),
        **module.env,
    ) as running:
        token_file = tmp_path / "data" / "gateway-dev-key"
        assert token_file.stat().st_mode & 0o777 == 0o600
        token = token_file.read_text().strip()
        assert token.startswith("ck_dev.")
        response = httpx.post(
            f"{running.url}/events",
            headers={"Authorization": f"Bearer {token}", **STRUCTURED},
            content=json.dumps(module.event("dev-1")),
        )
        assert response.status_code == 202, response.text
        assert response.json()["ids"] == ["dev:dev-1"]
        assert ready.exists()  # choreo dev and 'choreo health' wait for this
    assert "minted a development key" in running.log.read_text()


def test_an_invalid_keys_file_is_named(kafka: KafkaSettings, tmp_path: Path) -> None:
    keys = tmp_path / "keys.yaml"
    keys.write_text("keys:\n  - id: Not Valid\n    hash: x\n    types: []\n")
    result = run_gateway(
        {
            "CHOREO_KAFKA_BOOTSTRAP": kafka.bootstrap,
            "CHOREO_GATEWAY_PORT": str(free_port()),
            "CHOREO_GATEWAY_KEYS_FILE": str(keys),
        }
    )
    assert result.returncode == 1
    assert f"{keys}: key #1 is invalid" in result.stderr


def test_a_taken_port_is_a_clear_error(kafka: KafkaSettings, tmp_path: Path) -> None:
    with gateway_process(kafka.bootstrap, [key()], tmp_path) as running:
        port = running.url.rsplit(":", 1)[1]
        result = run_gateway(
            {
                "CHOREO_KAFKA_BOOTSTRAP": kafka.bootstrap,
                "CHOREO_GATEWAY_PORT": port,
                "CHOREO_GATEWAY_KEYS": json.dumps([key().entry.model_dump(mode="json")]),
            }
        )
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


def test_keys_may_come_from_the_environment_and_sigterm_stops_cleanly(
    kafka: KafkaSettings, tmp_path: Path
) -> None:
    module = event_module(tmp_path)
    acme = key("acme", types=(module.event_type,))
    with gateway_process(kafka.bootstrap, [acme], tmp_path, keys_in="env", **module.env) as running:
        response = httpx.post(
            f"{running.url}/events",
            headers={**acme.auth, **STRUCTURED},
            content=json.dumps(module.event("env-key-1")),
        )
        assert response.status_code == 202, response.text
        running.process.send_signal(signal.SIGTERM)
        assert running.process.wait(timeout=30) == 0
    log = running.log.read_text()
    assert "gateway listening on" in log
    assert "gateway stopped" in log


async def hostile_stream(running: GatewayProcess, acme: Key, event_type: str, rounds: int) -> None:
    """Oversized bodies (chunked and declared) and deeply nested ones, 8 at a time."""
    auth = acme.auth["Authorization"]
    nested_structured = (
        b'{"specversion":"1.0","id":"n","source":"/x","type":"%s","data":' % event_type.encode()
        + b"[" * (MIB - 200)
    )
    nested_binary = b'{"a":' * ((MIB - 100) // 5)
    binary_headers = {
        **acme.auth,
        "Content-Type": "application/json",
        "ce-specversion": "1.0",
        "ce-id": "n",
        "ce-source": "/x",
        "ce-type": event_type,
    }
    chunk = b" " * (64 * 1024)
    limit = asyncio.Semaphore(8)
    async with httpx.AsyncClient(base_url=running.url, timeout=60) as client:

        async def chunked() -> int:
            response = await raw_post(
                running.url, [("Authorization", auth), *STRUCTURED.items()], [chunk] * 640
            )
            return response.status

        async def declared() -> int:
            body = b'{"data": "' + b"x" * (2 * MIB) + b'"}'
            return (
                await client.post("/events", headers={**acme.auth, **STRUCTURED}, content=body)
            ).status_code

        async def nested() -> int:
            return (
                await client.post(
                    "/events", headers={**acme.auth, **STRUCTURED}, content=nested_structured
                )
            ).status_code

        async def nested_payload() -> int:
            return (
                await client.post("/events", headers=binary_headers, content=nested_binary)
            ).status_code

        async def one(kind: int) -> int:
            async with limit:
                return await (chunked, declared, nested, nested_payload)[kind % 4]()

        statuses = await asyncio.gather(*(one(n) for n in range(rounds * 4)))
    assert sorted(set(statuses)) == [400, 413], statuses
    assert statuses.count(413) == rounds * 2
    assert statuses.count(400) == rounds * 2


async def test_memory_stays_flat_under_oversized_and_deeply_nested_bodies(
    kafka: KafkaSettings, tmp_path: Path
) -> None:
    module = event_module(tmp_path)
    # A rate no burst of this test reaches: the point is memory, not the limiter (429s).
    acme = key("acme", types=(module.event_type,), rate=1e6, burst=1_000_000)
    with gateway_process(kafka.bootstrap, [acme], tmp_path, **module.env) as running:
        # Warm up first: caches, allocator arenas, connections.
        await hostile_stream(running, acme, module.event_type, rounds=20)
        baseline = running.rss_kib()
        await hostile_stream(running, acme, module.event_type, rounds=100)
        grown = running.rss_kib() - baseline
        peak = running.peak_rss_kib() - baseline
        # 400 hostile requests, 8 at a time: leaking a fraction of each would grow by
        # tens of MiB; buffering a chunked body past the limit (40 MiB each) would
        # peak hundreds of MiB higher. The bodies within the limit (1 MiB, 8 at a
        # time) and allocator noise stay well below these bounds.
        assert grown < 32 * 1024, f"RSS grew by {grown} KiB (from {baseline} KiB)"
        assert peak < 64 * 1024, f"RSS peaked {peak} KiB above {baseline} KiB"

        # ... and it still publishes afterwards.
        async with httpx.AsyncClient(base_url=running.url) as client:
            response = await client.post(
                "/events",
                headers={**acme.auth, **STRUCTURED},
                content=json.dumps(module.event("after-the-storm")),
            )
        assert response.status_code == 202, response.text
    assert ids_of(await all_records(kafka.bootstrap, module.topic)) == ["acme:after-the-storm"]
