"""The gateway process's heap: what was built at start-up is kept out of every later collection."""

from __future__ import annotations

import gc


def freeze_startup_heap() -> int:
    """Collect once, then move every object alive now to the collector's permanent generation.

    A started gateway holds about 100,000 container objects that live as long
    as the process (modules, pydantic validators, FastAPI routes, OpenTelemetry,
    aiokafka); each full collection walked them all: 40 to 90 ms on a quiet
    machine, every half second under a batch load, a pause for every request
    in flight and the batch scenario's p99. Frozen, a full collection walks
    only what was made since (about 20,000 objects, under 10 ms). For a
    process the gateway owns (``choreo run gateway``), once it is ready.

    Returns:
        How many objects are frozen.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
