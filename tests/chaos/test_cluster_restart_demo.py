"""``cluster_restart``: every broker of a three-node Apache Kafka stopped and started again
while ``choreo demo`` drives the reference system on it.

``choreo dev --bootstrap`` runs the services, the observer and the gateway on the cluster
(topics with replication 3, ``min.insync.replicas=2``, ``acks=all``); ``choreo demo
--bootstrap`` places 60 orders at 10 a second. Once the observer has seen some flows
start, all three nodes are stopped together and started again, while orders go on
arriving (the order intake stages them in its outbox, which sends them once the cluster
is back).

What is pinned: every flow ends (none left running); the demo's own tally (it follows
the flows on the topics) equals the observer's counts through its API; the checker,
reading every domain topic end to end, finds no lost flow, no duplicated effect, no
order violation and no unended flow. The figures are printed; run with ``-s`` to see them.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from choreokit.services.runtime import KafkaCluster
from tests.chaos.checker import check_topics
from tests.e2e.system import ROOT, choreo_args, running_dev
from tests.support import wait_until

SEED = 12
ORDERS = 60
RATE = 10.0
STOP_AFTER = 25
"""Flows the observer has seen start before the cluster is stopped."""
STOP_GRACE = timedelta(seconds=10)
TOPICS = ("orders", "inventory", "payments", "shipping")
TERMINALS = {"order.confirmed", "order.cancelled"}


def observer_counts(url: str, since: datetime) -> dict[str, Any]:
    params = {"saga": "order", "since": since.isoformat()}
    counts: dict[str, Any] = httpx.get(f"{url}/api/counts", params=params, timeout=10).json()
    return counts


def stop_all(cluster: KafkaCluster) -> None:
    """SIGTERM every node at once, as an operator stopping the cluster does; a node that has
    not exited after :data:`STOP_GRACE` is killed (a whole cluster going down cannot hand its
    partitions' leadership to anyone, and a broker waits for that before it exits)."""
    with ThreadPoolExecutor(len(cluster.nodes)) as pool:
        list(pool.map(lambda node: node.stop(STOP_GRACE), cluster.nodes))


def test_every_demo_flow_ends_and_the_observer_agrees_after_the_whole_cluster_restarts(
    kafka_cluster: KafkaCluster, tmp_path: Path
) -> None:
    cluster = kafka_cluster
    cluster.wait_ready()
    env = {"CHOREO_KAFKA_TOPIC_REPLICATION": "3"}
    with running_dev(tmp_path / "dev", env=env, bootstrap=cluster.bootstrap) as dev:
        observer = f"http://127.0.0.1:{dev.env['CHOREO_OBSERVER_PORT']}"
        since = datetime.now(UTC) - timedelta(seconds=1)
        demo = subprocess.Popen(
            choreo_args(
                "demo",
                "--json",
                *("--orders", str(ORDERS), "--seed", str(SEED), "--rate", str(RATE)),
                *("--bootstrap", cluster.bootstrap, "--orders-url", dev.orders_url),
                *("--observer-url", observer, "--timeout", "150"),
            ),
            cwd=ROOT,
            env=dev.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_until(
                lambda: observer_counts(observer, since)["total"] >= STOP_AFTER,
                timeout=120,
                what=f"the observer to see {STOP_AFTER} flows start",
            )
            seen_at_stop = observer_counts(observer, since)["total"]
            stopping = time.monotonic()
            stop_all(cluster)
            assert cluster.pids == [None, None, None]
            stopped = time.monotonic()
            cluster.restart()
            cluster.wait_ready()
            back = time.monotonic()
            try:
                out, err = demo.communicate(timeout=200)
            except subprocess.TimeoutExpired:
                demo.kill()
                out, err = demo.communicate()
                raise AssertionError(
                    f"choreo demo did not finish; the observer counts "
                    f"{observer_counts(observer, since)}; its stderr ends:\n{err[-3000:]}"
                ) from None
        finally:
            if demo.poll() is None:
                demo.kill()
                demo.wait()
        assert out, err[-3000:]
        summary = json.loads(out)
        counts = observer_counts(observer, since)
        restarts = {name: n for name, n in dev.state().get("restarts", {}).items() if n}
        renewed = {
            log.stem: n
            for log in sorted((dev.data_dir / "logs").glob("*.log"))
            if (n := log.read_text(errors="replace").count("starting a new producer"))
        }
        report = asyncio.run(
            check_topics(
                cluster.bootstrap,
                list(TOPICS),
                terminal_types=TERMINALS,
            )
        )

    report.print("cluster_restart")
    by_status = {k: v for k, v in counts["by_status"].items() if v}
    print(
        f"  {ORDERS} orders at {RATE:.0f}/s; all 3 nodes stopped after {seen_at_stop} flows "
        f"started (stopped in {stopped - stopping:.1f}s, started again in {back - stopped:.1f}s); "
        f"demo: {summary['outcomes']} in "
        f"{summary['seconds']}s, unexplained {len(summary['unexplained'])}; observer: "
        f"{by_status}; services restarted by choreo dev: {restarts or 'none'}; producers renewed "
        f"after a lost sequence: {renewed or 'none'}"
    )
    assert demo.returncode == 0, err[-3000:]
    assert summary["ok"], summary
    assert sum(summary["outcomes"].values()) == ORDERS
    assert summary["unexplained"] == []
    assert summary["observer_agrees"] is True
    assert counts["total"] == ORDERS
    assert not counts["by_status"].get("running")  # every flow ended
    assert by_status == summary["outcomes"]  # the observer's API and the demo's own tally
    assert report.flows == ORDERS
    report.assert_clean()
    assert all(pid is not None for pid in cluster.pids)  # left healthy for the next test
