"""Two observer processes in one consumer group, on one PostgreSQL database, split the flows
between them and together report what a single observer reports."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from choreokit.events import KafkaSettings
from tests import observer_fixtures
from tests.integration.kafka_io import every_partition
from tests.observer_fixtures import ObserverProcess, create_domain_topics, running_observer
from tests.order_flows import Outcome, mix, publish, steps_of
from tests.support import wait_until

private_broker = observer_fixtures.private_broker
private_kafka = observer_fixtures.private_kafka
postgres_databases = observer_fixtures.postgres_databases

FLOWS = 400


def events_ingested(observer: ObserverProcess) -> int:
    import httpx

    text = httpx.get(observer.url + "/metrics", timeout=10).text
    match = re.search(r'^choreo_observer_records_total\{kind="event"\} ([0-9.e+]+)$', text, re.M)
    assert match, text
    return int(float(match.group(1)))


@pytest.mark.slow
def test_two_observers_share_the_work_and_report_what_one_reports(
    private_kafka: KafkaSettings, postgres_databases: Callable[[], str], tmp_path: Path
) -> None:
    shared_db = postgres_databases()
    single_db = postgres_databases()
    asyncio.run(create_domain_topics(private_kafka))
    pair = [
        ObserverProcess(private_kafka, shared_db, tmp_path, group="pair", name=f"pair-{i}").start()
        for i in range(2)
    ]
    try:

        def split() -> bool:
            assigned = []
            for observer in pair:
                stats = observer.try_get("/api/stats")
                if stats is None or not stats["instance"]["assigned"]:
                    return False
                assigned.append(set(stats["instance"]["assigned"]))
            # Every partition on the broker: the domain's, and the topics the observers
            # declare themselves (sagas, approvals, the DLQ audit topic, ...).
            everything = asyncio.run(every_partition(private_kafka.bootstrap))
            return not assigned[0] & assigned[1] and assigned[0] | assigned[1] == everything

        wait_until(split, timeout=60, what="the two observers to split every partition")

        flows = mix(FLOWS, seed=31, outcomes=list(Outcome))
        steps = steps_of(flows)
        asyncio.run(publish(private_kafka, steps))
        settled = sum(
            f.outcome not in (Outcome.STOPS_AT_PAYMENT, Outcome.UNCOMPENSATED) for f in flows
        )

        def all_seen() -> bool:
            counts = pair[0].get("/api/counts")
            return bool(
                counts["total"] == FLOWS and FLOWS - counts["by_status"]["running"] == settled
            )

        wait_until(all_seen, timeout=120, what="every flow judged by the pair")
        shares = [events_ingested(observer) for observer in pair]
        pair_counts = [observer.get("/api/counts") for observer in pair]
        pair_stats = pair[0].get("/api/stats")
    finally:
        for observer in pair:
            observer.stop()

    assert all(share > 0 for share in shares), f"both observers took a share: {shares}"
    assert sum(shares) == len(steps), "each event was recorded by exactly one of them"
    assert pair_counts[0] == pair_counts[1]
    assert pair_stats["events"] == len(steps)
    assert pair_stats["duplicates"] == 0

    async def single() -> dict[str, object]:
        async with running_observer(private_kafka, single_db, tmp_path) as observer:
            return dict(
                await observer.wait(
                    "one observer to judge every flow",
                    lambda c: c["total"] == FLOWS and FLOWS - c["by_status"]["running"] == settled,
                    timeout=120,
                )
            )

    alone = asyncio.run(single())
    assert pair_counts[0] == alone
    expected = Counter(
        "running"
        if f.outcome in (Outcome.STOPS_AT_PAYMENT, Outcome.UNCOMPENSATED)
        else f.expected_status
        for f in flows
    )
    assert {k: v for k, v in alone["by_status"].items() if v} == dict(expected)  # type: ignore[attr-defined]
