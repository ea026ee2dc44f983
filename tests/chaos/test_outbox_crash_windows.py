"""``outbox_crash_windows``: a service's process SIGKILLed in both windows of its outbox.

A worker process (tests/chaos/outbox_worker.py) runs 1,000 transactions on PostgreSQL,
each inserting a business row and staging one ``txn.done`` event in the outbox; 100 of
them (chosen by the seed) roll back. Its :class:`~choreokit.events.sql.OutboxRelay` sends
what committed. The process kills itself (SIGKILL) four times, alternating between

* **after the commit, before the send**: committed rows read by the relay, the next one
  about to be handed to the producer;
* **after the send, before the mark**: the broker acknowledged a row, the relay had not
  marked it sent yet;

and is started again each time, until a last run without a crash finishes.

What is pinned: exactly 900 distinct ids on the topic, one per committed transaction and
none from a rolled-back one; the same id may be on the topic more than once (a row sent
again after a crash between its send and its mark; the next hop's inbox drops it), and at
least one such copy per crash after a send proves the window was really hit. The figures
are printed; run with ``-s`` to see them.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import asyncpg

from choreokit.services.runtime import KafkaCluster
from tests.chaos.checker import check, read_topics
from tests.chaos.outbox_worker import CRASH_ENV, WINDOWS, rolled_back
from tests.support import unique

ROOT = Path(__file__).resolve().parents[2]
SEED = 900
TRANSACTIONS = 1_000
ROLLED_BACK = 100
CRASHES = 4
"""Half in each window, alternating."""


def crash_plan(seed: int) -> list[tuple[str, int]]:
    """``(window, k)``: the run's process dies at its ``k``-th send, in ``window``."""
    rng = random.Random(seed)
    return [(WINDOWS[i % 2], rng.randint(40, 120)) for i in range(CRASHES)]


def run_worker(bootstrap: str, db: str, prefix: str, crash: str | None) -> tuple[int, float]:
    """Run the worker to its end (or its crash); its exit code and how long it ran."""
    env = {k: v for k, v in os.environ.items() if k != CRASH_ENV}
    if crash is not None:
        env[CRASH_ENV] = crash
    began = time.monotonic()
    args = ["--bootstrap", bootstrap, "--db", db, "--prefix", prefix, "--seed", str(SEED)]
    args += ["--transactions", str(TRANSACTIONS), "--rolled-back", str(ROLLED_BACK)]
    result = subprocess.run(
        [sys.executable, "-m", "tests.chaos.outbox_worker", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    ran = time.monotonic() - began
    if crash is None:
        assert result.returncode == 0, result.stderr[-3000:]
        assert result.stdout.strip() == "done"
    else:
        assert result.returncode == -9, (  # it killed itself where it was told to
            f"{crash}: exit {result.returncode}\n{result.stderr[-3000:]}"
        )
    return result.returncode, ran


async def database_state(db: str) -> tuple[set[int], int]:
    """The committed transactions, and the outbox rows not marked sent."""
    conn = await asyncpg.connect(db, timeout=10)
    try:
        committed = {r["n"] for r in await conn.fetch("SELECT n FROM txns")}
        unsent = await conn.fetchval(
            "SELECT count(*) FROM choreo_outbox WHERE published_at IS NULL"
        )
    finally:
        await conn.close()
    return committed, int(unsent)


async def test_crashes_in_both_outbox_windows_deliver_exactly_the_committed_transactions(
    kafka_broker: KafkaCluster, postgres_url: str
) -> None:
    bootstrap = kafka_broker.bootstrap
    prefix = unique("outbox")
    topic = f"{prefix}.txns"
    plan = crash_plan(SEED)
    runs: list[tuple[str, float]] = []
    for window, at in plan:
        _, ran = run_worker(bootstrap, postgres_url, prefix, f"{window}:{at}")
        runs.append((f"{window}:{at}", ran))
    _, ran = run_worker(bootstrap, postgres_url, prefix, None)
    runs.append(("no crash", ran))

    undone = rolled_back(SEED, TRANSACTIONS, ROLLED_BACK)
    committed, unsent = await database_state(postgres_url)
    seen = await read_topics(bootstrap, [topic])
    report = check(
        seen,
        expected_flows=[f"txn-{n}" for n in sorted(committed)],
        effect_types={"txn.done"},
        terminal_types={"txn.done"},
        topics=[topic],
    )
    ids_of: dict[int, set[str]] = defaultdict(set)
    for record in seen:
        assert isinstance(record.data, dict), record
        ids_of[record.data["n"]].add(record.id or "")
    distinct = {event_id for ids in ids_of.values() for event_id in ids}

    report.print("outbox_crash_windows")
    print(
        f"  {TRANSACTIONS} transactions, {ROLLED_BACK} rolled back, {len(committed)} committed; "
        f"{len(seen)} records, {len(distinct)} distinct ids, {report.copies} sent again; "
        f"delivered from rolled-back transactions {len(set(ids_of) & undone)}; unsent rows "
        f"{unsent}; runs: " + ", ".join(f"{name} ({s:.1f}s)" for name, s in runs)
    )
    assert committed == set(range(TRANSACTIONS)) - undone
    assert len(distinct) == TRANSACTIONS - ROLLED_BACK
    assert set(ids_of) == committed  # every committed transaction delivered, nothing else
    assert not set(ids_of) & undone
    assert all(len(ids) == 1 for ids in ids_of.values())  # one id per transaction
    assert unsent == 0
    assert report.copies >= CRASHES // 2  # each crash after a send left its row to send again
    report.assert_clean()
