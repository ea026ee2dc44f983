"""Every client connection to Apache Kafka cut (reset) by a proxy of ours in the middle of the demo.

The node advertises the proxy's port, so the services, the observer, the
gateway and the demo's own follower all reach Kafka through it; ``cut()``
resets every live connection and every new one for :data:`OUTAGE` seconds.
Figures (the gateway's answers during the outage, flows ended per second
before and after, the time until throughput was back) are printed; run with
``-s`` to see them.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.chaos.outage import Rig, demo_through_outage, proxied_system

pytestmark = pytest.mark.slow

SEED = 12
ORDERS = 200
RATE = 10.0
"""Orders per second the demo places (20 s of orders)."""
AFTER = 40
"""Flows ended before the cut."""
OUTAGE = 6.0
"""Seconds every connection stays cut."""


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    with proxied_system(tmp_path_factory.mktemp("cut")) as running:
        yield running


async def test_the_demo_ends_every_flow_through_a_cut_of_every_connection(rig: Rig) -> None:
    """Every flow ends as its injection explains and the observer agrees; during the cut the
    gateway answers 503 with Retry-After within its publish timeout, and a retry after it
    publishes the refused order once; flows end at the old rate again within 30 s."""
    outage = await demo_through_outage(
        rig,
        fault="connection_cut",
        inject=rig.proxy.cut,
        lift=rig.proxy.heal,
        orders=ORDERS,
        rate=RATE,
        seed=SEED,
        after=AFTER,
        seconds=OUTAGE,
    )
    outage.print(ORDERS, RATE, SEED, AFTER)
    print(f"proxy: {rig.proxy.accepted} connections accepted, {rig.proxy.resets} reset by the cut")
    assert rig.proxy.resets > 0  # the services' connections really went through the proxy
    outage.assert_recovered(ORDERS)
