"""A runtime that owns its process (``choreo run``) freezes the start-up heap once, when the
app reports ready; a runtime embedded in someone else's process leaves the collector alone."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from choreokit.services.runtime.app import Runtime
from choreokit.services.runtime.heap import YOUNG_THRESHOLD


@pytest.fixture
def collector() -> Iterator[None]:
    threshold = gc.get_threshold()
    gc.unfreeze()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


@pytest.mark.usefixtures("collector")
def test_an_owned_process_freezes_its_start_up_heap_once_when_ready(tmp_path: Path) -> None:
    runtime = Runtime(name="svc", data_dir=tmp_path, owns_process=True)
    assert gc.get_freeze_count() == 0
    runtime.mark_ready()
    frozen = gc.get_freeze_count()
    assert frozen > 0
    assert gc.get_threshold()[0] == YOUNG_THRESHOLD
    kept = [object() for _ in range(10)], {"made": "after"}  # noqa: F841 - alive, not frozen
    runtime.mark_ready()  # a second "ready" (a heartbeat, a re-announce) freezes nothing more
    assert gc.get_freeze_count() == frozen


@pytest.mark.usefixtures("collector")
def test_an_embedded_runtime_leaves_its_hosts_collector_alone(tmp_path: Path) -> None:
    threshold = gc.get_threshold()
    Runtime(name="svc", data_dir=tmp_path).mark_ready()
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == threshold


def test_choreo_run_owns_its_process() -> None:
    import inspect

    from choreokit.services.cli import _run

    assert "owns_process=True" in inspect.getsource(_run)


@pytest.mark.usefixtures("collector")
def test_thawing_gives_the_heap_and_the_thresholds_back() -> None:
    """The bench's hop workers measure one variant after another in one process."""
    from choreokit.services.runtime.heap import freeze_startup_heap, thaw_heap

    threshold = gc.get_threshold()
    survivor = [object() for _ in range(100)]
    assert freeze_startup_heap() >= len(survivor)
    thaw_heap()
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == threshold
