"""The demo on Apache Kafka through a bounded outage, shared by the connection-cut and pause tests.

One Kafka node behind a TCP proxy of ours (it advertises the proxy's port, so
every client connection, the services' and the demo's, goes through the proxy;
the node's own replication and controller listeners do not). ``choreo dev
--bootstrap`` runs every service, the observer and the gateway on it; ``choreo
demo --bootstrap`` drives orders at a steady rate while the test injects the
outage, probes the gateway during it, and measures completions per second
before and after.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from choreokit.events import KafkaSettings
from choreokit.services.example.demo.plan import Outcome
from choreokit.services.example.demo.tracker import TOPICS, FlowTracker
from choreokit.services.runtime import KafkaCluster, KafkaRigError
from tests.chaos.checker import Report, check_topics
from tests.e2e.system import ROOT, Dev, choreo_args, running_dev
from tests.rig.tcp_proxy import TcpProxy
from tests.support import wait_for

PUBLISH_TIMEOUT = 3.0
"""The gateway's ``CHOREO_GATEWAY_PUBLISH_TIMEOUT`` in these runs: its documented bound on a 503."""

SLACK = 1.0
"""What a loaded, shared machine may add to that bound (HTTP, scheduling)."""

WINDOW = 5.0
"""Seconds over which completions per second are counted."""

RECOVERED = 0.8
"""Throughput is back once a window after the outage completes this share of the rate before."""

BACK_WITHIN = 30.0
"""Seconds after the outage within which throughput must be back (the acceptance)."""

PROBES = (1, 2)
"""Orders placed through the gateway during the outage (and retried after it)."""

ACCEPTED = 202

TERMINAL_TYPES = ("order.confirmed", "order.cancelled")
"""A flow with neither never ended (the demo's own judge also waits for compensations)."""


@dataclass(frozen=True)
class Rig:
    """The proxied Kafka node and ``choreo dev`` on it."""

    cluster: KafkaCluster
    proxy: TcpProxy
    dev: Dev

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.dev.env['CHOREO_GATEWAY_PORT']}"

    @property
    def observer_url(self) -> str:
        return f"http://127.0.0.1:{self.dev.env['CHOREO_OBSERVER_PORT']}"


@contextmanager
def proxied_system(directory: Path) -> Iterator[Rig]:
    """One Kafka node advertising a proxy's port, and ``choreo dev`` through that proxy."""
    with TcpProxy(1) as proxy:
        cluster = KafkaCluster(1, directory=directory / "kafka", advertised=proxy.addresses)
        try:
            cluster.start()
        except KafkaRigError as exc:
            pytest.fail(f"Apache Kafka (1 node) is needed and did not start: {exc}")
        try:
            [node] = cluster.nodes
            proxy.route(0, node.host, node.port)
            env = {"CHOREO_GATEWAY_PUBLISH_TIMEOUT": f"{PUBLISH_TIMEOUT}s"}
            with running_dev(directory / "dev", env=env, bootstrap=proxy.bootstrap) as dev:
                yield Rig(cluster, proxy, dev)
        finally:
            cluster.close()


class Demo:
    """``choreo demo --bootstrap`` in a subprocess, against a running ``choreo dev``.

    Its output goes to files, not pipes: a pipe nobody reads until the end would
    block the demo (and its order placing) once the client's logs of the outage
    filled it.
    """

    def __init__(self, rig: Rig, *, orders: int, rate: float, seed: int) -> None:
        self.orders = orders
        self.out = rig.dev.data_dir.parent / f"demo-{seed}.json"
        self.err = rig.dev.data_dir.parent / f"demo-{seed}.log"
        with self.out.open("w") as out, self.err.open("w") as err:
            self.process = subprocess.Popen(
                choreo_args(
                    *("demo", "--json", "--bootstrap", rig.proxy.bootstrap),
                    *("--orders-url", rig.dev.orders_url, "--orders", str(orders)),
                    *("--rate", str(rate), "--seed", str(seed), "--timeout", "180"),
                ),
                cwd=ROOT,
                env=rig.dev.env,
                stdout=out,
                stderr=err,
            )

    async def summary(self) -> dict[str, Any]:
        """Wait for the demo to end; its JSON summary with ``exit_code`` and ``stderr``."""
        await asyncio.to_thread(self.process.wait, 300)
        err = self.err.read_text(errors="replace")[-3000:]
        out = self.out.read_text()
        assert out, err
        found: dict[str, Any] = json.loads(out)
        found["exit_code"] = self.process.returncode
        found["stderr"] = err
        return found

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@dataclass(frozen=True)
class Answer:
    """The gateway's answer to one request, and how long it took."""

    status: int
    seconds: float
    retry_after: str | None


def probe_event(n: int) -> dict[str, Any]:
    """An order placed through the gateway (a flow of its own, id ``probe-<n>``)."""
    return {
        "specversion": "1.0",
        "id": f"probe-{n}",
        "source": "/chaos/probe",
        "type": "order.placed",
        "dataversion": "2",
        "data": {
            "order_id": f"probe-{n}",
            "customer_id": "cust-0001",
            "lines": [{"sku": "SKU-1", "quantity": 1, "unit_price_cents": 1000}],
            "ship_to": {"country": "DE", "postal_code": "10115"},
        },
    }


async def post(rig: Rig, event: dict[str, Any]) -> Answer:
    """POST one event to the gateway with the dev key; time the answer."""
    token = (rig.dev.data_dir / "gateway-dev-key").read_text().strip()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/cloudevents+json"}
    async with httpx.AsyncClient(base_url=rig.gateway_url, timeout=60) as client:
        started = time.monotonic()
        answer = await client.post("/events", headers=headers, content=json.dumps(event))
        elapsed = time.monotonic() - started
    return Answer(answer.status_code, elapsed, answer.headers.get("retry-after"))


def ended(tracker: FlowTracker) -> list[datetime]:
    """When each flow the tracker follows ended (flows still running left out)."""
    ends = []
    for flow in tracker.flows.values():
        outcome, _, end = flow.judge()
        if outcome is not Outcome.RUNNING and end is not None:
            ends.append(end)
    return ends


def utc(wall: float) -> datetime:
    return datetime.fromtimestamp(wall, UTC)


@dataclass(frozen=True)
class Throughput:
    """Completions per second before an outage, and how soon after it they were back."""

    before: float
    """Flows ended per second in the window before the outage began."""
    back_after: float | None
    """Seconds from the end of the outage to the start of the first window whose rate is at
    least :data:`RECOVERED` of :attr:`before` (``None``: never, within the run)."""
    best_after: float
    """The highest rate of a window after the outage."""


def throughput(ends: Sequence[datetime], began: float, healed: float) -> Throughput:
    """Measure :class:`Throughput` from the flows' end times and the outage's wall-clock times."""
    stamps = sorted(e.timestamp() for e in ends)

    def rate(start: float) -> float:
        return sum(1 for s in stamps if start <= s < start + WINDOW) / WINDOW

    before = rate(began - WINDOW)
    back_after = None
    best = 0.0
    step = 0.25
    start = healed
    while stamps and start + WINDOW <= stamps[-1] + step:
        current = rate(start)
        best = max(best, current)
        if back_after is None and current >= RECOVERED * before:
            back_after = start - healed
        start += step
    return Throughput(before, back_after, best)


async def observer_counts(rig: Rig, since: datetime, total: int) -> dict[str, int]:
    """The observer's verdicts on the order flows begun since ``since``, once all ``total`` end."""
    params = {"saga": "order", "since": since.isoformat()}
    deadline = time.monotonic() + 120
    async with httpx.AsyncClient(base_url=rig.observer_url, timeout=10) as client:
        while True:
            counts = (await client.get("/api/counts", params=params)).json()
            by_status = {k: int(v) for k, v in counts["by_status"].items() if v}
            if int(counts["total"]) >= total and not by_status.get("running"):
                return by_status
            assert time.monotonic() < deadline, f"the observer judged only {counts} in 120s"
            await asyncio.sleep(0.2)  # noqa: sleep-ok - polls the observer's API


@dataclass(frozen=True)
class Outage:
    """What one demo run through an outage showed."""

    fault: str
    summary: dict[str, Any]
    observed: dict[str, int]
    """The observer's verdicts on every order flow of the run (the probes' included)."""
    probes: Counter[str]
    """The probe flows' outcomes, as the demo's own judge sees them."""
    during: tuple[Answer, ...]
    """The gateway's answers during the outage, one per probe."""
    lasted: float
    throughput: Throughput
    drained: float
    """Seconds from the outage's end until the last flow begun before that end had ended."""
    report: Report
    """The checker's reading of the flow topics end to end."""

    def print(self, orders: int, rate: float, seed: int, after: int) -> None:
        answers = ", ".join(f"{a.status} in {a.seconds:.2f}s" for a in self.during)
        figures = self.throughput
        print(
            f"\n{self.fault}: {orders} orders at {rate:g}/s (seed {seed}), outage of "
            f"{self.lasted:.1f}s after {after} flows ended; gateway during it: {answers} "
            f"(Retry-After {self.during[0].retry_after}, bound {PUBLISH_TIMEOUT:g}s); flows "
            f"ended/s before {figures.before:.1f}, best after {figures.best_after:.1f}, back "
            f"to {RECOVERED:.0%} after {figures.back_after}s; backlog drained "
            f"{self.drained:.1f}s after the outage; outcomes {self.summary['outcomes']}, "
            f"observer {self.observed}; demo {self.summary['seconds']}s, flow p99 "
            f"{self.summary['flow_duration_ms'].get('p99')}ms"
        )
        self.report.print(f"{self.fault} checker")

    def assert_recovered(self, orders: int) -> None:
        """Every flow ended as injected, the observer agrees, 503s in bound, throughput back."""
        summary = self.summary
        assert summary["exit_code"] == 0, summary["stderr"]
        assert summary["ok"] is True, summary["unexplained"]
        assert sum(summary["outcomes"].values()) == orders
        assert sum(self.probes.values()) == len(PROBES)
        assert self.observed == dict(Counter(summary["outcomes"]) + self.probes)
        for answer in self.during:
            assert answer.status == 503, answer
            assert answer.retry_after is not None
            assert int(answer.retry_after) >= 1
            assert answer.seconds <= PUBLISH_TIMEOUT + SLACK, answer
        assert self.throughput.back_after is not None, self.throughput
        assert self.throughput.back_after <= BACK_WITHIN, self.throughput
        assert self.report.flows == orders + len(PROBES)
        self.report.assert_clean()


async def demo_through_outage(
    rig: Rig,
    *,
    fault: str,
    inject: Callable[[], None],
    lift: Callable[[], None],
    orders: int,
    rate: float,
    seed: int,
    after: int,
    seconds: float,
) -> Outage:
    """Run the demo; once ``after`` flows ended, ``inject`` a fault, ``lift`` it ``seconds`` later.

    During the outage each probe order is posted to the gateway once (and timed);
    after it, each is retried with the same id until accepted, so it must be
    published once and its flow must end like any other.
    """
    tracker = FlowTracker(KafkaSettings(bootstrap=rig.cluster.bootstrap))
    since = utc(time.time() - 1)
    await tracker.start(from_end=True)
    demo = Demo(rig, orders=orders, rate=rate, seed=seed)
    try:
        await wait_for(
            lambda: len(ended(tracker)) >= after, timeout=120, what=f"{after} flows ended"
        )
        began = time.time()
        inject()
        try:
            during = [await post(rig, probe_event(n)) for n in PROBES]
            await asyncio.sleep(max(0.0, began + seconds - time.time()))  # noqa: sleep-ok - the outage
        finally:
            healed = time.time()
            lift()
        answers = dict(zip(PROBES, during, strict=True))
        deadline = time.monotonic() + BACK_WITHIN
        for n in PROBES:
            while answers[n].status != ACCEPTED:
                assert time.monotonic() < deadline, f"probe {n} not accepted: {answers[n]}"
                await asyncio.sleep(0.2)  # noqa: sleep-ok - a client's pause between retries
                answers[n] = await post(rig, probe_event(n))
        summary = await demo.summary()
        await wait_for(
            lambda: all(tracker.flow(f"dev:probe-{n}").judge()[2] for n in PROBES),
            timeout=60,
            what="the probes' flows to end",
        )
        observed = await observer_counts(rig, since, orders + len(PROBES))
    finally:
        demo.kill()
        await tracker.stop()
    report = await check_topics(
        rig.cluster.bootstrap,
        TOPICS,
        expected_flows=list(tracker.flows),
        terminal_types=TERMINAL_TYPES,
        timeout=60,
    )
    flows = list(tracker.flows.values())
    begun_before = [f for f in flows if (s := f.started_at) is not None and s.timestamp() < healed]
    last_end = max(end.timestamp() for f in begun_before if (end := f.judge()[2]) is not None)
    return Outage(
        fault=fault,
        summary=summary,
        observed=observed,
        probes=Counter(tracker.flow(f"dev:probe-{n}").judge()[0].value for n in PROBES),
        during=tuple(during),
        lasted=healed - began,
        throughput=throughput(ended(tracker), began, healed),
        drained=max(0.0, last_end - healed),
        report=report,
    )
