"""Crashes at any moment lose nothing and double nothing: an observer process killed with SIGKILL
again and again during a 10,000-event ingest ends with the state of a replay from scratch
(SQLite and PostgreSQL). Offsets live in the projection's transaction, so the database never
holds a batch without its offsets or offsets without their batch."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from choreokit.events import KafkaSettings
from tests import observer_fixtures
from tests.observer_fixtures import ObserverProcess, create_domain_topics, log_ends, snapshot
from tests.order_flows import DOMAIN_TOPICS, mix, publish, steps_of
from tests.support import wait_until

private_broker = observer_fixtures.private_broker
private_kafka = observer_fixtures.private_kafka
postgres_databases = observer_fixtures.postgres_databases

FLOWS = 2000  # five events a flow on average: 10,000 events
KILLS = 5
NO_STALLS = {"CHOREO_OBSERVER_TIMEOUT": "1h", "CHOREO_KAFKA_MAX_BATCH": "200"}


def caught_up(observer: ObserverProcess, ends: dict[tuple[str, int], int], flows: int) -> bool:
    stats = observer.try_get("/api/stats")
    if stats is None:
        return False
    stored = {(p["topic"], p["partition"]): p["next_offset"] for p in stats["positions"]}
    counts = observer.get("/api/counts")
    return (
        all(stored.get(tp, 0) >= end for tp, end in ends.items())
        and counts["total"] == flows
        and counts["by_status"]["running"] == 0
        and stats["lifecycle_pending"] == 0
    )


def run_to_the_end(
    kafka: KafkaSettings, db: str, tmp_path: Path, group: str, ends: dict[tuple[str, int], int]
) -> None:
    observer = ObserverProcess(kafka, db, tmp_path, group=group, env=NO_STALLS, name=group).start()
    try:
        wait_until(
            lambda: caught_up(observer, ends, FLOWS), timeout=180, what=f"{group} to catch up"
        )
    finally:
        assert observer.stop() == 0, observer.tail()


def comparable(snap: dict[str, Any]) -> dict[str, Any]:
    """The projection, without the read positions on the observer's own output topic."""
    return snap | {"positions": [p for p in snap["positions"] if p[0] != "sagas"]}


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_an_observer_killed_repeatedly_during_ingest_ends_like_a_replay_from_scratch(
    backend: str,
    private_kafka: KafkaSettings,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    if backend == "postgresql":
        create: Callable[[], str] = request.getfixturevalue("postgres_databases")
        killed_db, replay_db = create(), create()
    else:
        killed_db = f"sqlite:///{tmp_path / 'killed.sqlite3'}"
        replay_db = f"sqlite:///{tmp_path / 'replay.sqlite3'}"
    flows = mix(FLOWS, seed=21)
    steps = steps_of(flows)
    assert len(steps) >= 10_000
    asyncio.run(create_domain_topics(private_kafka))
    asyncio.run(publish(private_kafka, steps))
    ends = asyncio.run(log_ends(private_kafka, DOMAIN_TOPICS))

    seen_at_kill: list[int] = []
    for _ in range(KILLS):
        before = seen_at_kill[-1] if seen_at_kill else 0
        observer = ObserverProcess(
            private_kafka, killed_db, tmp_path, group="killed", env=NO_STALLS, name="killed"
        ).start()
        progress: dict[str, int] = {}

        def moved_on(
            observer: ObserverProcess = observer,
            progress: dict[str, int] = progress,
            before: int = before,
        ) -> bool:
            stats = observer.try_get("/api/stats")
            if stats is None:
                return False
            progress["events"] = stats["events"]
            return bool(stats["events"] >= before + len(steps) // (KILLS + 2))

        try:
            wait_until(moved_on, timeout=120, what="the observer to make progress")
        finally:
            observer.kill()  # in the middle of whatever it is doing
        seen_at_kill.append(progress["events"])
    assert seen_at_kill == sorted(seen_at_kill)
    assert seen_at_kill[-1] < len(steps), "every kill came before the ingest was over"

    run_to_the_end(private_kafka, killed_db, tmp_path, "killed", ends)
    run_to_the_end(private_kafka, replay_db, tmp_path, "replay", ends)

    survivor, replay = asyncio.run(snapshot(killed_db)), asyncio.run(snapshot(replay_db))
    assert len(survivor["events"]) == len(steps)
    assert all(e["deliveries"] == 1 for e in survivor["events"]), "nothing was counted twice"
    assert len(survivor["flows"]) == FLOWS
    assert {f["correlation_id"]: f["status"] for f in survivor["flows"]} == {
        f.correlation_id: f.expected_status for f in flows
    }
    assert comparable(survivor) == comparable(replay)
