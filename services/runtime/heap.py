"""A service process's heap: start-up objects out of later collections, fewer young ones."""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 10_000
"""Allocations between two collections of the youngest generation (CPython's default: 700)."""

_before: tuple[int, int, int] | None = None
"""The collector's thresholds before :func:`freeze_startup_heap` changed them."""


def freeze_startup_heap() -> int:
    """Collect once, then move every object alive now to the collector's permanent generation.

    A started service holds about 100,000 container objects that live as long
    as the process (modules, pydantic validators, FastAPI routes, OpenTelemetry,
    aiokafka); each full collection walked them all. In the gateway that was 40
    to 95 ms every half second under a batch load, a pause for every request in
    flight and the batch scenario's p99. Frozen, a full collection walks only
    what was made since (up to 20,000 objects: 1 to 18 ms on a loaded machine).
    :meth:`Runtime.mark_ready <choreokit.services.runtime.app.Runtime.mark_ready>`
    calls it once for a process the runtime owns (``choreo run``): never for an
    app embedded in someone else's process.

    The youngest generation is also collected less often (every
    :data:`YOUNG_THRESHOLD` allocations instead of 700): a request or a batch
    of records allocates a few hundred containers, nearly all freed by
    reference counting within it, and the young collections were 5 % of the
    gateway's CPU. On the handler hop, full collections walking the start-up
    heap were about 13 µs of CPU per record (docs/benchmarks.md, "Tracing and
    the hop"). Frozen objects are never freed, hence one collection first.

    Returns:
        How many objects are frozen.
    """
    global _before  # noqa: PLW0603 - the collector's settings are the process's
    if _before is None:
        _before = gc.get_threshold()
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
    return gc.get_freeze_count()


def thaw_heap() -> None:
    """Give the frozen objects back to the collector and restore its thresholds.

    For a process that runs one measured or tested app after another (the bench's
    hop workers); a service process keeps its heap frozen until it exits.
    """
    global _before  # noqa: PLW0603 - the collector's settings are the process's
    gc.unfreeze()
    if _before is not None:
        gc.set_threshold(*_before)
        _before = None
