"""Producers written in Java (kafka-clients + the CloudEvents SDK's Kafka binding) and Go
(franz-go), as docs/publishing-from-other-systems.md shows them: each is built from
tests/interop, publishes one order.placed v2 straight to the ``orders`` topic of the
session's Apache Kafka, and the reference system on it (``choreo dev --bootstrap``) takes
the order through the whole saga (orders, inventory, payments, shipping, order.confirmed),
which the saga observer's JSON API then judges ``completed``. The page's code blocks are
checked to be these very files.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from aiokafka.partitioner import murmur2

from choreokit.services.runtime import KafkaCluster
from tests.e2e.producers import (
    GO_PROJECT,
    GO_SOURCES,
    JAVA_PROJECT,
    JAVA_SOURCES,
    ROOT,
    BuildError,
    Built,
    go_producer,
    java_producer,
)
from tests.e2e.system import Dev, running_dev
from tests.integration.kafka_io import all_records, end_offsets
from tests.support import wait_until

PAGE = ROOT / "docs" / "publishing-from-other-systems.md"
SHOWN = re.compile(
    r"<!-- file: (?P<path>\S+) -->\n```(?P<lang>\w+)\n(?P<code>.*?)^```\n", re.S | re.M
)


def shown_files() -> dict[str, str]:
    """The page's blocks marked ``<!-- file: PATH -->``: path -> the block's text."""
    return {m["path"]: m["code"] for m in SHOWN.finditer(PAGE.read_text())}


def test_the_page_shows_the_java_and_go_producers_exactly_as_they_are_built() -> None:
    expected = {
        **{f"{JAVA_PROJECT.relative_to(ROOT)}/{s}": JAVA_PROJECT / s for s in JAVA_SOURCES},
        **{f"{GO_PROJECT.relative_to(ROOT)}/{s}": GO_PROJECT / s for s in GO_SOURCES},
    }
    del expected[f"{GO_PROJECT.relative_to(ROOT)}/go.sum"]  # checksums: no reading matter
    shown = shown_files()
    assert set(shown) == set(expected)
    for path, text in shown.items():
        assert text == expected[path].read_text(), f"the page's {path} differs from the file"


@pytest.fixture(scope="session")
def java() -> Built:
    """The Java producer, built by Maven (or taken from the cache)."""
    try:
        return java_producer()
    except BuildError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="session")
def go() -> Built:
    """The Go producer, built by the go tool (or taken from the cache)."""
    try:
        return go_producer()
    except BuildError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="module")
def system(kafka_broker: KafkaCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dev]:
    """The reference system (every service, the observer, the gateway) on Apache Kafka."""
    data_dir = tmp_path_factory.mktemp("polyglot") / "dev"
    with running_dev(data_dir, bootstrap=kafka_broker.bootstrap) as dev:
        yield dev


def observer_flow(dev: Dev, correlation_id: str) -> dict[str, Any] | None:
    """The observer's view of one flow, or None while it has not seen it."""
    url = f"http://127.0.0.1:{dev.env['CHOREO_OBSERVER_PORT']}/api/flows/{correlation_id}"
    answer = httpx.get(url, timeout=10)
    if answer.status_code == 404:
        return None
    answer.raise_for_status()
    flow: dict[str, Any] = answer.json()
    return flow


@pytest.mark.slow
@pytest.mark.parametrize(
    ("language", "order_id", "source"),
    [
        ("java", "o-4001", "/partners/acme/erp"),
        ("go", "o-5001", "/partners/acme/fulfilment"),
    ],
)
def test_an_order_from_another_language_completes_the_saga(
    request: pytest.FixtureRequest,
    system: Dev,
    language: str,
    order_id: str,
    source: str,
) -> None:
    producer: Built = request.getfixturevalue(language)
    done = subprocess.run(
        producer.command,
        env={**os.environ, "CHOREO_KAFKA_BOOTSTRAP": system.bootstrap},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"the {language} producer failed:\n{done.stdout}\n{done.stderr}"
    event_id = done.stdout.strip().splitlines()[-1]

    # On the wire: binary mode, the contract's headers, keyed and partitioned by the flow.
    [record] = [
        r
        for r in asyncio.run(all_records(system.bootstrap, "orders"))
        if (r.headers and dict(r.headers).get("ce_id") == event_id.encode())
    ]
    headers = {k: v.decode() for k, v in record.headers}
    assert headers["content-type"] == "application/json"
    assert headers["ce_specversion"] == "1.0"
    assert headers["ce_type"] == "order.placed"
    assert headers["ce_dataversion"] == "2"
    assert headers["ce_source"] == source
    assert headers["ce_correlationid"] == event_id
    assert "ce_time" in headers
    assert record.key == event_id.encode()
    partitions = len(asyncio.run(end_offsets(system.bootstrap, "orders")))
    assert record.partition == (murmur2(record.key) & 0x7FFFFFFF) % partitions  # as aiokafka
    # Through the saga, as the observer judges it.
    flows: list[dict[str, Any]] = []

    def judged() -> bool:
        flow = observer_flow(system, event_id)
        if flow is not None:
            flows.append(flow)
        return flow is not None and flow["status"] != "running"

    wait_until(judged, timeout=120, what=f"the observer to judge the {language} order's flow")
    flow = flows[-1]
    assert flow["status"] == "completed", flow
    assert flow["saga"] == "order"
    assert flow["connected"] is True
    assert flow["root_id"] == event_id
    assert flow["end_type"] == "order.confirmed"
    events = {event["type"]: event for event in flow["events"]}
    assert {
        "order.placed",
        "stock.reserved",
        "payment.authorized",
        "shipment.completed",
        "order.confirmed",
    } <= set(events)
    assert events["order.placed"]["source"] == source
    assert events["order.placed"]["dataversion"] == 2
    placed = httpx.get(
        f"http://127.0.0.1:{system.env['CHOREO_OBSERVER_PORT']}/api/events/{event_id}", timeout=10
    ).json()
    assert placed["payload"]["order_id"] == order_id
