"""Apache Kafka frozen (SIGSTOP) in the middle of the demo: connections stay open, nothing answers.

Unlike a cut, nothing is reset: every client's requests simply get no answer
(the stalled broker of a long GC pause or a hung host). The gateway must not
hang on it: it answers 503 with Retry-After within its publish timeout.
Figures are printed; run with ``-s`` to see them.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.chaos.outage import Rig, demo_through_outage, proxied_system

pytestmark = pytest.mark.slow

SEED = 13
ORDERS = 200
RATE = 10.0
"""Orders per second the demo places (20 s of orders)."""
AFTER = 40
"""Flows ended before the pause."""
OUTAGE = 6.0
"""Seconds the broker stays frozen."""


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    with proxied_system(tmp_path_factory.mktemp("pause")) as running:
        yield running


async def test_the_demo_ends_every_flow_through_a_frozen_broker(rig: Rig) -> None:
    """Every flow ends as its injection explains and the observer agrees; while the broker
    is frozen the gateway answers 503 with Retry-After within its publish timeout, and a
    retry after it publishes the refused order once; flows end at the old rate again
    within 30 s."""
    [node] = rig.cluster.nodes
    outage = await demo_through_outage(
        rig,
        fault="broker_pause",
        inject=node.pause,
        lift=node.resume,
        orders=ORDERS,
        rate=RATE,
        seed=SEED,
        after=AFTER,
        seconds=OUTAGE,
    )
    outage.print(ORDERS, RATE, SEED, AFTER)
    assert node.running
    outage.assert_recovered(ORDERS)
