"""Deadlines wait for the observer to catch up: a sweep while it is behind its topics judges
nothing (no ``saga.stalled``, no ``saga.step_overdue`` for flows whose answers are unread);
the first sweep after it caught up judges as usual."""

from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path

from prometheus_client import CollectorRegistry

from choreokit.services.example.contracts.saga import ORDER_SAGA
from choreokit.services.saga_observer import SagaCatalog
from choreokit.services.saga_observer.lifecycle import Transition
from choreokit.services.saga_observer.metrics import ObserverMetrics
from choreokit.services.saga_observer.queries import Queries
from choreokit.services.saga_observer.records import micros
from choreokit.services.saga_observer.store import Store, open_engines
from choreokit.services.saga_observer.sweeper import Sweeper
from tests.order_flows import Outcome, as_records, order_flow, steps_of
from tests.unit.test_saga_store import NOW, Fed


async def test_a_sweep_behind_the_log_judges_nothing_and_one_caught_up_does(
    tmp_path: Path,
) -> None:
    catalog = SagaCatalog([ORDER_SAGA])
    writer, reader = open_engines(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    store = Store(writer, catalog, group="observer")
    await store.migrate()
    queries = Queries(reader, catalog, group="observer", jaeger_url="http://jaeger:16686")
    behind = True
    announced: list[Transition] = []
    sweeper = Sweeper(
        store,
        clock=lambda: micros(NOW + timedelta(days=2)),  # every deadline long passed
        interval=timedelta(seconds=1),
        metrics=ObserverMetrics(CollectorRegistry()),
        on_transitions=announced.extend,
        caught_up=lambda: not behind,
    )
    flow = order_flow(Outcome.STOPS_AT_PAYMENT, index=1, rng=random.Random(1), start=NOW)
    try:
        await Fed(store).feed(as_records(steps_of([flow])), batch=10)
        assert await sweeper.sweep() == 0
        assert sweeper.deferred == 1
        assert announced == []
        detail = await queries.flow(flow.correlation_id)
        assert detail is not None
        assert detail.status == "running"

        behind = False
        assert await sweeper.sweep() == 1
        detail = await queries.flow(flow.correlation_id)
        assert detail is not None
        assert detail.status == "stalled"
        assert {t.type for t in announced} >= {"saga.stalled"}
    finally:
        await writer.dispose()
        await reader.dispose()
