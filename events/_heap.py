"""A long-running service's heap and the garbage collector: start-up is not scanned again.

A service process holds a large, long-lived heap once it has started (the
modules, classes and schemas of aiokafka, FastStream, pydantic, OpenTelemetry
and the user's code), and every record it handles allocates short-lived
containers. Each full collection the collector runs walks the whole heap,
start-up included: measured on the handler hop, that was about 13 µs of CPU per
record (docs/benchmarks.md, "Tracing and the hop"). Frozen objects
(:func:`gc.freeze`) are left out of every collection, so only what the service
made since is walked. Frozen objects are never freed, hence one collection
first, and :func:`thaw_heap` when the service stops.
"""

from __future__ import annotations

import gc


def freeze_startup_heap() -> None:
    """Collect once, then leave every object alive now out of later collections.

    Call it once the process has started its services (``choreo run`` does);
    :func:`thaw_heap` undoes it.
    """
    gc.collect()
    gc.freeze()


def thaw_heap() -> None:
    """Give the frozen objects back to the collector (the services stopped)."""
    gc.unfreeze()
