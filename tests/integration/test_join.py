"""Fan-in joins on a real broker, with the service a real process SIGKILLed between inputs.

Per the acceptance of issue 14 (point 7): the inputs arrive in every order,
twice each, with the service SIGKILLed while it handles them -> exactly one
output per flow (one ``ce_id``), caused by the completing input and naming the
others in ``ce_joined``; the deadline variant publishes one timeout event. The
join's tables are also exercised on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from choreokit.events import KafkaSettings, Service, decode, new_event_id
from choreokit.events.sql._tables import joins
from choreokit.services.runtime import EmbeddedBroker
from choreokit.services.runtime.database import create_engine
from choreokit.testing import ServiceKit
from tests.child import JsonLinesChild
from tests.integration.kafka_io import all_records
from tests.join_catalog import JoinCatalog, join_catalog, join_service
from tests.support import unique


class Worker(JsonLinesChild):
    """One ``join_worker`` process; what it printed is gathered as it comes."""

    def __init__(self, bootstrap: str, prefix: str, db: str, log: Path, *extra: str) -> None:
        self.handling: list[str] = []
        self.started = False
        args = ["--bootstrap", bootstrap, "--prefix", prefix, "--db", db, *extra]
        super().__init__("tests.integration.join_worker", args, log)

    def take(self, message: dict[str, Any]) -> None:
        self.started = self.started or "started" in message
        if "handling" in message:
            self.handling.append(message["handling"])

    async def wait(self, what: str, predicate: Any, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            self.drain()
            assert self.process.poll() is None, f"the worker died waiting for {what}"
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            await asyncio.sleep(0.02)  # noqa: sleep-ok - yields between checks of a condition

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)
        self._close()

    def terminate(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            assert self.process.wait(timeout=60) == 0
        finally:
            if self.process.poll() is None:
                self.process.kill()
            self._close()


@pytest.fixture
async def feeder(tansu_broker: EmbeddedBroker) -> AsyncIterator[tuple[Service, JoinCatalog]]:
    """Publishes the inputs (and creates every topic of the catalog)."""
    cat = join_catalog(unique("join"))
    settings = KafkaSettings(bootstrap=tansu_broker.bootstrap)
    service = Service(
        unique("feeder"),
        registry=cat.registry,
        settings=settings,
        publishes=[*cat.inputs, cat.done, cat.timed_out],
    )
    async with service:
        yield service, cat


async def outputs(bootstrap: str, cat: JoinCatalog) -> dict[str, dict[str, Any]]:
    """The out topic's events by correlation id, then ce_id (repeats of one id fold)."""
    found: dict[str, dict[str, Any]] = defaultdict(dict)
    for record in await all_records(bootstrap, cat.out_topic):
        envelope = decode(record.headers, record.value, fallback_time=datetime.now(UTC)).envelope
        found[envelope.correlation_id][envelope.id] = envelope
    return found


async def send_twice(feeder: Service, event: Any, event_id: str, flow: str) -> None:
    for _ in range(2):  # the same event twice: a producer's retry, a replay
        await feeder.publisher.publish(event, correlation_id=flow, event_id=event_id)


async def test_every_order_twice_each_with_sigkills_gives_one_output_per_flow(
    feeder: tuple[Service, JoinCatalog], tansu_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    service, cat = feeder
    bootstrap = tansu_broker.bootstrap
    db = f"sqlite:///{tmp_path / 'joiner.sqlite3'}"
    orders = list(itertools.permutations(range(3)))
    flows = {f"flow-{n}": order for n, order in enumerate(orders)}
    ids = {(flow, i): new_event_id() for flow in flows for i in range(3)}
    log = tmp_path / "worker.log"
    for phase in range(3):
        worker = Worker(bootstrap, cat.out_topic.rsplit(".", 1)[0], db, log)
        await worker.wait("the worker to start", lambda w=worker: w.started)
        for n, (flow, order) in enumerate(flows.items()):
            i = order[phase]
            await send_twice(service, cat.inputs[i](order_id=f"o-{n}"), ids[(flow, i)], flow)
        # SIGKILL while it handles this phase's inputs: wherever that handling is.
        await worker.wait("the worker to handle an input", lambda w=worker: bool(w.handling))
        worker.kill()
    worker = Worker(bootstrap, cat.out_topic.rsplit(".", 1)[0], db, log)
    await worker.wait("every join claimed", lambda: _all_claimed(tmp_path, len(flows)))
    found: dict[str, dict[str, Any]] = {}

    async def every_flow_answered() -> bool:
        found.update(await outputs(bootstrap, cat))
        return set(found) >= set(flows)

    deadline = time.monotonic() + 60
    while not await every_flow_answered():
        assert time.monotonic() < deadline, f"outputs of {set(flows) - set(found)} never came"
    worker.terminate()  # a clean stop: the last batch committed, nothing more to come
    found = await outputs(bootstrap, cat)
    for flow, order in flows.items():
        assert len(found[flow]) == 1, (flow, found[flow])
        [envelope] = found[flow].values()
        assert envelope.type == "join.done"
        named = {envelope.causation_id, *envelope.joined_ids}
        assert named == {ids[(flow, i)] for i in range(3)}, flow
        assert envelope.causation_id in {ids[(flow, i)] for i in order}
    assert set(found) == set(flows)


def _all_claimed(tmp_path: Path, count: int) -> bool:
    import sqlite3

    with sqlite3.connect(tmp_path / "joiner.sqlite3") as conn:
        (claimed,) = conn.execute(
            "SELECT count(*) FROM choreo_joins WHERE claimed_by IS NOT NULL"
        ).fetchone()
    return bool(claimed == count)


async def test_a_passed_deadline_publishes_one_timeout_event_across_a_sigkill(
    feeder: tuple[Service, JoinCatalog], tansu_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    service, cat = feeder
    bootstrap = tansu_broker.bootstrap
    db = f"sqlite:///{tmp_path / 'joiner.sqlite3'}"
    prefix = cat.out_topic.rsplit(".", 1)[0]
    log = tmp_path / "worker.log"
    worker = Worker(bootstrap, prefix, db, log, "--deadline-ms", "1500")
    await worker.wait("the worker to start", lambda: worker.started)
    flows = {f"late-{n}": (new_event_id(), new_event_id()) for n in range(2)}
    for n, (flow, (a, b)) in enumerate(flows.items()):
        await send_twice(service, cat.inputs[0](order_id=f"o-{n}"), a, flow)
        await send_twice(service, cat.inputs[1](order_id=f"o-{n}"), b, flow)
    await worker.wait("the worker to handle an input", lambda: bool(worker.handling))
    worker.kill()  # the deadline may pass while it is down
    worker = Worker(bootstrap, prefix, db, log, "--deadline-ms", "1500")
    engine = create_engine(db)
    try:
        deadline = time.monotonic() + 60
        while True:
            async with engine.connect() as conn:
                sent = (
                    await conn.execute(
                        select(joins.c.correlation_id).where(joins.c.timeout_sent_at.is_not(None))
                    )
                ).all()
            if len(sent) == len(flows):
                break
            worker.drain()
            assert worker.process.poll() is None, "the worker died"
            assert time.monotonic() < deadline, "the timeouts were never sent"
            await asyncio.sleep(0.05)  # noqa: sleep-ok - yields between checks of a condition
    finally:
        await engine.dispose()
    worker.terminate()
    found = await outputs(bootstrap, cat)
    assert set(found) == set(flows)
    for flow, (a, b) in flows.items():
        assert len(found[flow]) == 1, (flow, found[flow])
        [envelope] = found[flow].values()
        assert envelope.type == "join.timed_out"
        # Caused by the input that opened the join, naming the other if it came in time (the
        # deadline may pass while the worker is down, before the second input is recorded).
        assert envelope.causation_id in {a, b}
        assert set(envelope.joined_ids) <= {a, b} - {envelope.causation_id}


async def test_the_join_tables_work_on_both_databases(database_url: str) -> None:
    """Every order of the inputs, twice each, and a deadline, on SQLite and PostgreSQL."""
    cat = join_catalog(unique("joindb"))
    engine = create_engine(database_url)
    try:
        service, join = join_service(cat, engine, deadline=timedelta(seconds=30))
        await join.create_tables()
        async with ServiceKit(service) as kit:
            for n, order in enumerate(itertools.permutations(range(3))):
                flow, event_ids = f"flow-{n}", {i: new_event_id() for i in order}
                published = []
                for i in order:
                    for _ in range(2):
                        handled = await kit.deliver(
                            cat.inputs[i](order_id=f"o-{n}"),
                            event_id=event_ids[i],
                            correlation_id=flow,
                        )
                        published += [p.envelope.id for p in handled.published]
                assert len(set(published)) == 1, order
            await kit.deliver(cat.inputs[0](order_id="lonely"), correlation_id="lonely-flow")
            later = datetime.now(UTC) + timedelta(seconds=31)
            assert await join.expire(later) == 1
            assert await join.expire(later) == 0
    finally:
        await engine.dispose()
