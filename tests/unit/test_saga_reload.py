"""The observer reloads a changed spec file on its sweep, without a restart: the open flows
of the changed saga get the new verdict, and a broken edit leaves the previous specs."""

from __future__ import annotations

import logging
import os
import random
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from choreokit.services.saga_observer import SagaCatalog
from choreokit.services.saga_observer.catalog import SpecFiles, load_catalog
from choreokit.services.saga_observer.metrics import ObserverMetrics
from choreokit.services.saga_observer.queries import Queries
from choreokit.services.saga_observer.records import micros
from choreokit.services.saga_observer.store import Store, open_engines
from choreokit.services.saga_observer.sweeper import Sweeper
from tests.order_flows import Outcome, as_records, order_flow, steps_of
from tests.unit.test_saga_store import NOW, Fed

SPEC = """\
name: order
start: order.placed
success: [{success}]
failure: [order.cancelled]
steps:
  order.placed: [stock.reserved, stock.rejected]
  stock.rejected: [order.cancelled]
timeout: 1h
"""


def write(path: Path, text: str, bump: int) -> None:
    path.write_text(text)
    stamp = path.stat().st_mtime_ns + bump * 1_000_000_000
    os.utime(path, ns=(stamp, stamp))


async def status(queries: Queries, correlation_id: str) -> str:
    detail = await queries.flow(correlation_id)
    assert detail is not None
    return str(detail.status)


async def verdict(path: Path, edits: list[str]) -> list[str]:
    """The flow's status after each edit of the spec file (and one sweep)."""
    spec_file = path / "sagas.yaml"
    write(spec_file, SPEC.format(success="order.confirmed"), 0)
    catalog = load_catalog([spec_file], group="choreokit.none")
    files = SpecFiles(catalog, [spec_file], group="choreokit.none")
    writer, reader = open_engines(f"sqlite:///{path / 'db.sqlite3'}")
    store = Store(writer, catalog, group="observer")
    await store.migrate()
    queries = Queries(reader, catalog, group="observer", jaeger_url="http://jaeger:16686")
    sweeper = Sweeper(
        store,
        clock=lambda: micros(NOW + timedelta(seconds=5)),
        interval=timedelta(seconds=1),
        metrics=ObserverMetrics(CollectorRegistry()),
        on_transitions=lambda _changes: None,
        spec_files=files,
    )
    flow = order_flow(Outcome.STOPS_AT_PAYMENT, index=1, rng=random.Random(1), start=NOW)
    statuses = []
    try:
        await Fed(store).feed(as_records(steps_of([flow])), batch=10)
        statuses.append(await status(queries, flow.correlation_id))
        for i, text in enumerate(edits, start=1):
            write(spec_file, text, i)
            await sweeper.sweep()
            statuses.append(await status(queries, flow.correlation_id))
    finally:
        await writer.dispose()
        await reader.dispose()
    return statuses


async def test_a_changed_spec_file_is_judged_by_on_the_next_sweep(tmp_path: Path) -> None:
    # The flow stops at the reservation: running, until the spec says that is a success.
    assert await verdict(tmp_path, [SPEC.format(success="stock.reserved")]) == [
        "running",
        "completed",
    ]


async def test_a_broken_edit_keeps_the_previous_specs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broken = SPEC.format(success="order.confirmed") + "timeout: [not a duration\n"
    with caplog.at_level(logging.ERROR, "choreokit.observer"):
        statuses = await verdict(tmp_path, [broken, SPEC.format(success="stock.reserved")])
    assert statuses == ["running", "running", "completed"]
    assert "saga specs not reloaded" in caplog.text


def test_the_catalog_updates_in_place_and_names_what_changed(tmp_path: Path) -> None:
    spec_file = tmp_path / "sagas.yaml"
    write(spec_file, SPEC.format(success="order.confirmed"), 0)
    catalog = load_catalog([spec_file], group="choreokit.none")
    files = SpecFiles(catalog, [spec_file], group="choreokit.none")
    assert files.reload_if_changed() == frozenset()  # nothing changed on disk
    write(spec_file, SPEC.format(success="stock.reserved"), 1)
    assert files.reload_if_changed() == {"order"}
    spec = catalog.get("order")
    assert spec is not None
    assert spec.success == ("stock.reserved",)
    assert catalog.update(SagaCatalog()) == {"order"}
    assert len(catalog) == 0
