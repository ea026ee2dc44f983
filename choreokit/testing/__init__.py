"""choreokit's test kit: drive a real service in memory, capture its spans.

:class:`ServiceKit` runs a :class:`~choreokit.events.Service`'s declared
handlers, middlewares, retries, dead-letter decisions and inbox through the
same consuming core as production, over an in-memory log instead of Kafka
(in the manner of FastStream's ``TestKafkaBroker``); :func:`drive` does the
same for a deployable app's service, with the app's own set-up::

    from choreokit.testing import ServiceKit

    async def test_reserves_stock() -> None:
        async with ServiceKit(inventory) as kit:
            handling = await kit.deliver(OrderPlaced(order_id="o-1", lines=...))
        assert handling.one(StockReserved).order_id == "o-1"

:func:`capture_spans` records the spans of a service's tracing middleware in
memory (as structlog's ``capture_logs`` does for logs). Installing choreokit
also registers a pytest plugin with the fixtures ``choreo_spans``,
``choreo_broker`` (the real embedded broker, for integration tests) and
``choreo_kafka`` (settings pointing at it). See ``docs/testing.md``.
"""

from choreokit.events.testkit import (
    DeadLetter,
    Handling,
    MemoryConsumer,
    MemoryLog,
    MemoryProducer,
    Published,
    ServiceKit,
    StoredRecord,
)
from choreokit.testing._apps import drive
from choreokit.testing._spans import CapturedSpans, capture_spans

__all__ = [
    "CapturedSpans",
    "DeadLetter",
    "Handling",
    "MemoryConsumer",
    "MemoryLog",
    "MemoryProducer",
    "Published",
    "ServiceKit",
    "StoredRecord",
    "capture_spans",
    "drive",
]
