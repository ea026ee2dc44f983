"""dlq_replay: dead letters fixed and replayed from the CLI complete their flows, for the
failed group only; the observer shows them resolved; a purge hides one; all of it audited."""

from __future__ import annotations

import asyncio
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

from choreokit.events import HandlerContext, KafkaSettings, PermanentError, RetryPolicy, Service
from choreokit.events.dlq import DeadLetterFilter, DeadLetterStore
from choreokit.services.saga_observer.access import DEV_TOKEN_FILE
from tests import observer_fixtures
from tests.integration.dlq_events import ItemAdded, ItemSeen, registry
from tests.observer_fixtures import CHOREO, ROOT, running_observer
from tests.support import unique, wait_for

private_broker = observer_fixtures.private_broker
private_kafka = observer_fixtures.private_kafka

SPEC = """\
sagas:
  - name: items
    start: dlqtest.item.added
    success: [dlqtest.item.seen]
    timeout: 120s
"""
EVENTS_MODULE = "tests.integration.dlq_events"


async def choreo(kafka: KafkaSettings, *args: str, expect: int = 0) -> str:
    """Run ``choreo ARGS`` as a user would, without blocking the services in this loop."""
    process = await asyncio.create_subprocess_exec(
        str(CHOREO),
        *args,
        "--bootstrap",
        kafka.bootstrap,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={
            **os.environ,
            "CHOREO_OPERATOR": "test-operator",
            "CHOREO_EVENT_MODULES": EVENTS_MODULE,
            "PYTHONPATH": str(ROOT),
        },
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == expect, (args, out.decode(), err.decode())
    return out.decode()


def lines(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


async def test_dlq_replay_completes_flows_for_the_failed_group_only(
    private_kafka: KafkaSettings, tmp_path: Path
) -> None:
    kafka = private_kafka
    spec = tmp_path / "items.yaml"
    spec.write_text(SPEC)
    upgraded = False
    fragile = Service(
        unique("fragile"),
        registry=registry,
        settings=kafka,
        retry=RetryPolicy(max_attempts=1),
        publishes=[ItemSeen],
    )
    bystander = Service(unique("bystander"), registry=registry, settings=kafka)
    producer = Service(unique("producer"), registry=registry, settings=kafka)
    bystander_saw: Counter[int] = Counter()

    @fragile.handler(ItemAdded)
    async def see(event: Any, ctx: HandlerContext) -> None:
        if event.label == "bad":
            raise PermanentError(f"label {event.label!r} is not allowed on item {event.n}")
        if not upgraded:
            try:
                stock: dict[str, int] = {}
                stock[f"stock-{event.n}"] -= 1  # a KeyError: the record is missing
            except KeyError as exc:
                raise RuntimeError(f"no stock record for item {event.n}") from exc
        await ctx.publish(ItemSeen(n=event.n))

    @bystander.handler(ItemAdded)
    async def count(event: Any) -> None:
        bystander_saw[event.n] += 1

    db = f"sqlite:///{tmp_path / 'observer.sqlite3'}"
    async with (
        running_observer(kafka, db, tmp_path, specs=(spec,)) as observer,
        fragile,
        bystander,
        producer,
    ):
        flows = {}
        for n, label in ((1, "ok"), (2, "ok"), (3, "bad"), (4, "bad"), (5, "ok")):
            envelope = await producer.publish(ItemAdded(n=n, label=label))
            flows[n] = envelope.correlation_id
        await wait_for(lambda: fragile.stats.dead_lettered == 5, what="5 dead letters")
        await wait_for(lambda: fragile.lag() == 0, what="the dead letters acknowledged")
        await wait_for(lambda: sum(bystander_saw.values()) == 5, what="the bystander")
        await observer.wait(
            "5 dead letters in the observer",
            lambda body: body["total"] == 5,
            path="/api/dead-letters?status=dead",
        )

        everyone = lines(await choreo(kafka, "dlq", "list", "--group", fragile.name, "--json"))
        by_n = {_n(d, flows): d for d in everyone}
        assert sorted(by_n) == [1, 2, 3, 4, 5]
        listed = [d for d in everyone if _n(d, flows) != 5]
        assert {d["status"] for d in listed} == {"dead"}
        assert by_n[1]["error_type"] == "RuntimeError"
        groups = lines(await choreo(kafka, "dlq", "groups", "--json"))
        assert sorted(g["count"] for g in groups) == [2, 3], groups
        [runtime_group] = [g for g in groups if g["error_type"] == "RuntimeError"]
        assert runtime_group["message"] == "no stock record for item <n>"
        assert runtime_group["frame"].endswith(":see")
        shown = json.loads(await choreo(kafka, "dlq", "show", by_n[1]["id"], "--json"))
        assert [link["type"] for link in shown["error_chain"]] == ["RuntimeError", "KeyError"]
        assert "KeyError: 'stock-1'" in shown["traceback"]
        assert shown["data"] == {"n": 1, "label": "ok"}

        # An invalid correction is refused, one line, nothing sent.
        refused = await choreo(
            kafka, "dlq", "replay", by_n[3]["id"], "--data", '{"n": "three"}', expect=2
        )
        assert refused == ""

        # The consuming service is "upgraded". The observer replays one dead letter (for an
        # operator only, audited), then the CLI the rest of its failure group.
        upgraded = True
        # The observer replays too, for an operator only, and audits who asked.
        letter5 = by_n[5]
        topic, partition, offset = letter5["id"].rsplit("/", 2)
        path = f"/api/dead-letters/{topic}/{partition}/{offset}/replay"
        assert (await observer.client.post(path, json={})).status_code == 401
        token = (tmp_path / DEV_TOKEN_FILE).read_text().strip()
        answer = await observer.client.post(
            path, json={}, headers={"Authorization": f"Bearer {token}"}
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["group"] == fragile.name
        assert answer.json()["operator"] == "developer"

        await observer.wait(
            "the observer's replay handled",
            lambda body: body["total"] == 1,
            path="/api/dead-letters?status=resolved",
        )

        replayed = lines(
            await choreo(
                kafka,
                "dlq",
                "replay",
                "--fingerprint",
                runtime_group["fingerprint"],
                "--wait",
                "30",
                "--json",
            )
        )
        assert sorted(r["dead_letter"] for r in replayed) == sorted([by_n[1]["id"], by_n[2]["id"]])
        assert {(r["result"], r["group"]) for r in replayed} == {("handled", fragile.name)}

        # A bad payload is corrected on replay; the other bad one is purged.
        [fixed] = lines(
            await choreo(
                kafka,
                "dlq",
                "replay",
                by_n[3]["id"],
                "--data",
                '{"n": 3, "label": "fixed"}',
                "--wait",
                "30",
                "--json",
            )
        )
        assert fixed["result"] == "handled"
        purged = await choreo(kafka, "dlq", "purge", by_n[4]["id"], "--reason", "test data")
        assert "purged 1" in purged

        for n in (1, 2, 3, 5):
            detail = await observer.wait(
                f"flow {n} completed",
                lambda body: body["status"] == "completed" and body["dead_letters"] == 0,
                path=f"/api/flows/{flows[n]}",
            )
            [letter] = detail["dead_letter_records"]
            assert letter["status"] == "resolved"
        await observer.wait(
            "the purge", lambda body: body["total"] == 1, path="/api/dead-letters?status=purged"
        )
        still = await observer.get("/api/dead-letters/groups")
        assert still == [], still

        after = lines(await choreo(kafka, "dlq", "list", "--json"))
        assert sorted(d["status"] for d in after) == ["resolved"] * 4
        everything = lines(await choreo(kafka, "dlq", "list", "--include-purged", "--json"))
        assert len(everything) == 5
        [gone] = [d for d in everything if d["status"] == "purged"]
        assert gone["purged_by"] == "test-operator: test data"
        again = await choreo(kafka, "dlq", "replay", by_n[1]["id"], expect=2)
        assert again == ""
        # The bystander, on the same topic, never saw a second copy: it skipped the replays.
        assert bystander_saw == Counter({1: 1, 2: 1, 3: 1, 4: 1, 5: 1})
        assert bystander.stats.replays_skipped == 4
        assert fragile.stats.replays_handled == 4
        audit = await observer.client.get(
            "/api/audit", headers={"Authorization": f"Bearer {token}"}
        )
        assert [(e["action"], e["target"], e["result"]) for e in audit.json()["items"]] == [
            ("dlq.replay", letter5["id"], "sent")
        ]

    async with DeadLetterStore(kafka) as store:
        [audited] = await store.read(DeadLetterFilter(correlation_id=flows[3]))
    [replay] = audited.replays
    assert (replay.operator, replay.edited, replay.result) == ("test-operator", True, "handled")


def _n(letter: dict[str, Any], flows: dict[int, str]) -> int:
    return next(n for n, cid in flows.items() if cid == letter["correlation_id"])
