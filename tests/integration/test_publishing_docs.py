"""The examples of docs/publishing-from-other-systems.md, extracted from the page and run:
curl against a real gateway process, kafkajs and confluent-kafka straight to the broker.
Each event must then be handled by the reference services: the real ``inventory``
service (``choreo run inventory``) answers each order.placed with stock.reserved,
naming the example's event as its cause.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.partitioner import murmur2

from choreokit.services.runtime import EmbeddedBroker, free_port
from tests.integration.gateway_harness import (
    CHOREO,
    GatewayProcess,
    Key,
    gateway_process,
    key,
)
from tests.integration.kafka_io import all_records
from tests.support import wait_until

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "publishing-from-other-systems.md"
NODE_MODULES = ROOT / "tests" / "interop" / "node_modules"
EXAMPLE = re.compile(
    r"<!-- example: (?P<name>[\w-]+) -->\n```(?P<lang>\w+)\n(?P<code>.*?)\n```", re.S
)
EXPECTED = {
    "curl-binary",
    "curl-structured",
    "curl-batch",
    "node-kafkajs",
    "python-confluent-kafka",
}


def examples() -> dict[str, tuple[str, str]]:
    """Every marked example of the page: name -> (language, code)."""
    return {m["name"]: (m["lang"], m["code"]) for m in EXAMPLE.finditer(PAGE.read_text())}


def test_the_page_has_every_example_and_nothing_else_runs_unchecked() -> None:
    assert set(examples()) == EXPECTED


@pytest.fixture(scope="module")
def docs_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """A broker of this module's own: the examples use the real topic name, 'orders'."""
    log = tmp_path_factory.mktemp("docs-broker") / "tansu.log"
    with EmbeddedBroker(port=free_port(), log=log) as broker:
        yield broker


@pytest.fixture(scope="module")
def acme() -> Key:
    return key("acme", types=("order.placed",), sources=("/partners/acme/*",))


@pytest.fixture(scope="module")
def gateway(
    docs_broker: EmbeddedBroker, acme: Key, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    # The example domain's events (order.placed) are the ones the page publishes.
    with gateway_process(
        docs_broker.bootstrap, [acme], tmp_path_factory.mktemp("gw"), CHOREO_EXAMPLE="1"
    ) as running:
        yield running


@pytest.fixture(scope="module")
def inventory(
    docs_broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[subprocess.Popen[bytes]]:
    """The reference inventory service, as a container runs it, on the module's broker."""
    tmp = tmp_path_factory.mktemp("inventory")
    ready = tmp / "inventory.ready"
    log = tmp / "inventory.log"
    env = {
        **os.environ,
        "CHOREO_KAFKA_BOOTSTRAP": docs_broker.bootstrap,
        "CHOREO_DATA_DIR": str(tmp / "data"),
        "CHOREO_READY_FILE": str(ready),
        "CHOREO_EXAMPLE": "1",  # inventory is the example domain's
    }
    with log.open("wb") as out:
        process = subprocess.Popen([CHOREO, "run", "inventory"], env=env, stdout=out, stderr=out)
    try:

        def up() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"inventory exited: {log.read_text()}")
            return ready.exists()

        wait_until(up, timeout=60, what="the inventory service to be ready")
        yield process
    finally:
        process.terminate()
        process.wait(timeout=30)


async def replies_to(
    bootstrap: str, causes: set[str], *, timeout: float = 60.0
) -> dict[str, tuple[dict[str, str], Any]]:
    """Inventory's answers (headers, payload) to the events ``causes``, by cause id."""
    consumer = AIOKafkaConsumer(
        "inventory",
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=50,
    )
    await consumer.start()
    found: dict[str, tuple[dict[str, str], Any]] = {}
    deadline = time.monotonic() + timeout
    try:
        while not causes <= set(found):
            if time.monotonic() > deadline:
                raise AssertionError(f"inventory answered {sorted(found)} of {sorted(causes)}")
            for records in (await consumer.getmany(timeout_ms=200)).values():
                for record in records:
                    headers = {k: (v or b"").decode() for k, v in record.headers}
                    cause = headers.get("ce_causationid")
                    if cause in causes:
                        found[cause] = (headers, json.loads(record.value or b"null"))
    finally:
        await consumer.stop()
    return found


async def partitions_of(bootstrap: str, ids: list[str]) -> dict[str, tuple[int, bytes | None]]:
    """Partition and key of the order.placed records with these ce_ids."""
    records = await all_records(bootstrap, "orders")
    by_id = {dict(r.headers)["ce_id"].decode(): (r.partition, r.key) for r in records}
    return {event_id: by_id[event_id] for event_id in ids}


async def run_example(name: str, env: dict[str, str], tmp_path: Path) -> str:
    lang, code = examples()[name]
    if lang == "bash":
        command = ["bash", "-euo", "pipefail", "-c", code]
    elif lang == "javascript":
        if shutil.which("node") is None or not NODE_MODULES.is_dir():
            pytest.fail("node and tests/interop/node_modules are needed: run scripts/test")
        script = tmp_path / f"{name}.js"
        script.write_text(code)
        command = ["node", str(script)]
        env = {**env, "NODE_PATH": str(NODE_MODULES)}
    else:
        script = tmp_path / f"{name}.py"
        script.write_text(code)
        command = [sys.executable, str(script)]
    result = await asyncio.to_thread(
        subprocess.run,
        command,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
        check=False,
    )
    assert result.returncode == 0, f"{name} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def partition_of(key: bytes, partitions: int = 4) -> int:
    """Java's (and aiokafka's) default partitioner: murmur2 of the key, positive, modulo."""
    hashed: int = murmur2(key)
    return (hashed & 0x7FFFFFFF) % partitions


@pytest.mark.parametrize(
    ("name", "ids"),
    [
        ("curl-binary", ["acme:acme-order-1001"]),
        ("curl-structured", ["acme:acme-order-1002"]),
        ("curl-batch", ["acme:acme-order-1003", "acme:acme-order-1004"]),
    ],
)
async def test_a_curl_example_publishes_through_the_gateway(
    docs_broker: EmbeddedBroker,
    gateway: GatewayProcess,
    acme: Key,
    inventory: subprocess.Popen[bytes],
    tmp_path: Path,
    name: str,
    ids: list[str],
) -> None:
    out = await run_example(
        name, {"CHOREO_GATEWAY_URL": gateway.url, "CHOREO_GATEWAY_KEY": acme.token}, tmp_path
    )
    answer = json.loads(out)
    assert answer["ids"] == ids
    replies = await replies_to(docs_broker.bootstrap, set(ids))
    for event_id in ids:
        headers, payload = replies[event_id]
        assert headers["ce_type"] == "stock.reserved", payload
        assert headers["ce_correlationid"] == event_id  # the flow the example started
    for event_id, (partition, record_key) in (
        await partitions_of(docs_broker.bootstrap, ids)
    ).items():
        assert record_key == event_id.encode()
        assert partition == partition_of(event_id.encode())
    if name == "curl-structured":  # sent as v1, handled by inventory as v2 (upcast)
        _, payload = replies[ids[0]]
        assert payload["lines"] == [{"sku": "SKU-7", "quantity": 1}]
        assert payload["amount_cents"] == 990


@pytest.mark.parametrize(
    ("name", "order_id", "source"),
    [
        ("node-kafkajs", "o-2001", "/partners/acme/checkout"),
        ("python-confluent-kafka", "o-3001", "/partners/acme/warehouse"),
    ],
)
async def test_a_kafka_client_example_publishes_straight_to_the_topic(
    docs_broker: EmbeddedBroker,
    inventory: subprocess.Popen[bytes],
    tmp_path: Path,
    name: str,
    order_id: str,
    source: str,
) -> None:
    out = await run_example(name, {"CHOREO_KAFKA_BOOTSTRAP": docs_broker.bootstrap}, tmp_path)
    event_id = out.strip().splitlines()[-1]
    replies = await replies_to(docs_broker.bootstrap, {event_id})
    headers, payload = replies[event_id]
    assert headers["ce_type"] == "stock.reserved"
    assert headers["ce_correlationid"] == event_id
    assert payload["order_id"] == order_id
    records = [
        r
        for r in await all_records(docs_broker.bootstrap, "orders")
        if dict(r.headers)["ce_id"].decode() == event_id
    ]
    [record] = records
    assert dict(record.headers)["ce_source"].decode() == source
    assert record.key == event_id.encode()
    # The same partition choreokit's services (aiokafka, murmur2) choose for that flow.
    assert record.partition == partition_of(event_id.encode())
