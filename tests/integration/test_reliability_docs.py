"""docs/reliability.md's examples, run: the retry configuration, and the repair session
(groups, list, show, replay a failure group, replay with a corrected payload, purge)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
from pathlib import Path
from typing import Any

from choreokit.events import KafkaSettings, PermanentError, RetryPolicy, Service
from tests import observer_fixtures
from tests.integration.dlq_events import ChargeRequested, registry
from tests.observer_fixtures import CHOREO, ROOT
from tests.support import unique, wait_for

private_broker = observer_fixtures.private_broker
private_kafka = observer_fixtures.private_kafka

PAGE = ROOT / "docs" / "reliability.md"
EXAMPLE = re.compile(
    r"<!-- example: (?P<name>[\w-]+) -->\n```(?P<lang>\w+)\n(?P<code>.*?)\n```", re.S
)
DOC_FINGERPRINT = "5f0c3e2a9b7d4e11"


def examples() -> dict[str, str]:
    return {m["name"]: m["code"] for m in EXAMPLE.finditer(PAGE.read_text())}


def test_the_page_has_its_examples() -> None:
    assert set(examples()) == {"retry-policy", "repair", "exactly-once", "exactly-once-env"}


def test_the_retry_configuration_example_builds_its_service() -> None:
    scope: dict[str, Any] = {}
    exec(examples()["retry-policy"], scope)
    service = scope["payments"]
    assert service.name == "payments"


async def run(line: str, kafka: KafkaSettings, fingerprint: str) -> tuple[int, str, str]:
    args = shlex.split(line.replace(DOC_FINGERPRINT, fingerprint))
    assert args[0] == "choreo"
    process = await asyncio.create_subprocess_exec(
        str(CHOREO),
        *args[1:],
        "--bootstrap",
        kafka.bootstrap,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={
            **os.environ,
            "CHOREO_OPERATOR": "docs",
            "CHOREO_EVENT_MODULES": "tests.integration.dlq_events",
            "PYTHONPATH": str(ROOT),
        },
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_the_repair_session_runs_as_written(private_kafka: KafkaSettings) -> None:
    kafka = private_kafka.model_copy(update={"topic_partitions": 1})
    deployed = False
    charged: list[str] = []
    payments = Service(
        "payments", registry=registry, settings=kafka, retry=RetryPolicy(max_attempts=1)
    )
    producer = Service(unique("shop"), registry=registry, settings=kafka)

    @payments.handler(ChargeRequested)
    async def charge(event: ChargeRequested) -> None:
        if event.order_id == "o-4":
            raise PermanentError(f"order {event.order_id!r} is a test order")
        if event.amount_cents < 0:
            raise PermanentError(f"negative amount {event.amount_cents} for {event.order_id!r}")
        if not deployed:
            raise RuntimeError(f"card service unavailable for order {event.order_id!r}")
        charged.append(event.order_id)

    async with payments, producer:
        for n, amount in ((1, 500), (2, 700), (3, -1250), (4, 100)):
            await producer.publish(ChargeRequested(order_id=f"o-{n}", amount_cents=amount))
        await wait_for(lambda: payments.stats.dead_lettered == 4, what="4 dead letters")
        await wait_for(lambda: payments.lag() == 0, what="the dead letters acknowledged")
        deployed = True  # the fix is out; now the operator repairs
        lines = examples()["repair"].splitlines()
        code, out, err = await run(lines[0] + " --json", kafka, "-")
        assert code == 0, err
        [runtime] = [g for g in map(json.loads, out.splitlines()) if g["count"] == 2]
        outputs = []
        for line in lines:
            code, out, err = await run(line, kafka, runtime["fingerprint"])
            assert code == 0, (line, out, err)
            assert err == "", (line, err)
            outputs.append(out)
        assert "RuntimeError" in outputs[0]
        assert len(outputs[1].splitlines()) == 4
        assert "card service unavailable for order 'o-1'" in outputs[2]
        assert outputs[3].count(": handled") == 2
        assert outputs[4].count(": handled") == 1
        assert "purged 1" in outputs[5]
        statuses = sorted(line.split()[1] for line in outputs[6].splitlines())
        assert statuses == ["purged", "resolved", "resolved", "resolved"]
        assert sorted(charged) == ["o-1", "o-2", "o-3"]


def test_the_page_is_linked_from_the_events_page() -> None:
    assert "reliability.md" in (ROOT / "docs" / "events.md").read_text()
    assert Path(PAGE).exists()
