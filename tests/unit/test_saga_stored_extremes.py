"""The observer's API never answers 500 for what its database holds, even for times no
event may carry any more (rows stored before times were bounded, or by another version)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import httpx
from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry

from choreokit.events import Envelope
from choreokit.services.runtime.access import AccessPolicy
from choreokit.services.saga_observer.api import build_api
from choreokit.services.saga_observer.audit import AuditLog
from choreokit.services.saga_observer.metrics import ObserverMetrics
from choreokit.services.saga_observer.queries import Queries
from choreokit.services.saga_observer.records import Position, SeenEvent, from_micros, micros
from choreokit.services.saga_observer.store import Advance
from tests.unit.test_saga_api import FakeInstance
from tests.unit.test_saga_store import CATALOG, NOW, opened

EXTREMES = [
    datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC),
    datetime(1, 1, 1, tzinfo=timezone(-timedelta(hours=23, minutes=59))),
    datetime(1969, 12, 31, 23, 59, tzinfo=UTC),
]


def test_from_micros_gives_the_nearest_datetime_for_any_stored_number() -> None:
    moment = datetime(2026, 3, 4, 5, 6, 7, 891234, tzinfo=UTC)
    assert from_micros(micros(moment)) == moment
    assert from_micros(2**63 - 1) == datetime.max.replace(tzinfo=UTC)
    assert from_micros(-(2**63)) == datetime.min.replace(tzinfo=UTC)
    assert from_micros(-1) == datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)


async def test_flows_with_extreme_stored_times_are_listed_and_shown(tmp_path: Path) -> None:
    async with opened(tmp_path / "db.sqlite3") as (store, queries):
        for offset, moment in enumerate(EXTREMES):
            envelope = Envelope(
                id=f"e-{offset}",
                source="/services/orders",
                type="order.placed",
                dataversion=2,
                time=moment,
                correlation_id=f"flow-{offset}",
            )
            seen = SeenEvent(envelope, Position("orders", 0, offset), "{}", 2)
            expected = None if offset == 0 else offset
            tp = TopicPartition("orders", 0)
            await store.apply([seen], {tp: Advance(expected, offset + 1)}, micros(NOW))
        reader = Queries(queries._engine, CATALOG, group="saga-observer", jaeger_url="-")
        app = build_api(
            queries=reader,
            catalog=CATALOG,
            metrics=ObserverMetrics(CollectorRegistry()),
            instance=FakeInstance(),
            max_page_size=50,
            access=AccessPolicy(allowed_hosts=("observer",)),
            audit=AuditLog(store._engine, queries._engine, lambda: 0),
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://observer") as client:
            flows = await client.get("/api/flows")
            assert flows.status_code == 200, flows.text
            assert flows.json()["total"] == len(EXTREMES)
            for path in ["/api/counts", "/api/topology", "/api/facets"] + [
                f"/api/flows/flow-{n}" for n in range(len(EXTREMES))
            ]:
                response = await client.get(path)
                assert response.status_code == 200, (path, response.text)
