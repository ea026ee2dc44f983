"""The saga observer: every flow rebuilt from its events, judged against saga specs, shown.

It judges by the saga specs of the event layer (:class:`choreokit.events.SagaSpec`):
declare a saga next to its events and publish it through the ``choreokit.sagas``
entry point (or list it in a YAML file named by ``CHOREO_OBSERVER_SPECS``)::

    ORDER_SAGA = SagaSpec.declare(
        "order",
        start=OrderPlaced,
        success=[OrderConfirmed],
        failure=[OrderCancelled],
        steps={OrderPlaced: [StockReserved, StockRejected]},
        compensations={StockReserved: StockReleased},
        timeout=timedelta(seconds=60),
    )

Run it with ``choreo run saga-observer``; see ``docs/saga-observer.md``.
"""

from choreokit.services.saga_observer.catalog import SagaCatalog, load_catalog
from choreokit.services.saga_observer.graph import FlowGraph, Node
from choreokit.services.saga_observer.judge import (
    Expectation,
    Judgement,
    Reason,
    Refusal,
    Status,
    judge,
)
from choreokit.services.saga_observer.settings import ObserverSettings

__all__ = [
    "Expectation",
    "FlowGraph",
    "Judgement",
    "Node",
    "ObserverSettings",
    "Reason",
    "Refusal",
    "SagaCatalog",
    "Status",
    "judge",
    "load_catalog",
]
