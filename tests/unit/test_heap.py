"""A running service's start-up heap is out of the garbage collector's scans, and given back."""

from __future__ import annotations

import asyncio
import gc

from choreokit.events import freeze_startup_heap, thaw_heap
from choreokit.services.runtime.app import ServiceApp


def test_freezing_moves_what_is_alive_out_of_the_collections_and_thawing_gives_it_back() -> None:
    assert gc.get_freeze_count() == 0
    survivor = [object() for _ in range(100)]
    freeze_startup_heap()
    try:
        assert gc.get_freeze_count() >= len(survivor)
    finally:
        thaw_heap()
    assert gc.get_freeze_count() == 0


async def test_a_service_app_freezes_its_start_up_heap_while_it_runs_and_thaws_it_after() -> None:
    frozen_while_running: list[int] = []

    async def task(stop: asyncio.Event) -> None:
        frozen_while_running.append(gc.get_freeze_count())
        stop.set()

    await ServiceApp(tasks=[task]).run(asyncio.Event())
    assert frozen_while_running[0] > 0
    assert gc.get_freeze_count() == 0
