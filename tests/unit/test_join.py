"""Join (fan-in) in memory on SQLite: every arrival order, repeats, late and foreign inputs,
the deadline's one timeout event, the declaration's checks, and the observer's graph of it."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from choreokit.events import (
    ConfigurationError,
    Event,
    KeyConflictError,
    Service,
    new_event_id,
)
from choreokit.events.sql import Join, Joined
from choreokit.services.runtime.database import create_engine
from choreokit.services.saga_observer.graph import FlowGraph, Node
from choreokit.testing import Published, ServiceKit
from tests.join_catalog import JoinCatalog, join_catalog, join_service


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    found = create_engine(f"sqlite:///{tmp_path / 'join.sqlite3'}")
    yield found
    await found.dispose()


@pytest.fixture
def cat() -> JoinCatalog:
    return join_catalog("unit-join")


async def test_every_order_twice_each_gives_one_output_naming_every_input(
    engine: AsyncEngine, cat: JoinCatalog
) -> None:
    service, join = join_service(cat, engine)
    await join.create_tables()
    orders = list(itertools.permutations(range(3)))
    async with ServiceKit(service) as kit:
        for n, order in enumerate(orders):
            flow, order_id = f"flow-{n}", f"o-{n}"
            ids = {i: new_event_id() for i in order}
            outputs: list[Published] = []
            for i in order:
                for _ in range(2):  # each input twice: the same event delivered again
                    handled = await kit.deliver(
                        cat.inputs[i](order_id=order_id), event_id=ids[i], correlation_id=flow
                    )
                    outputs += handled.published
            distinct = {p.envelope.id: p for p in outputs}
            assert len(distinct) == 1, (order, outputs)
            [done] = distinct.values()
            assert done.envelope.causation_id == ids[order[-1]]  # the completing input
            assert set(done.envelope.joined_ids) == {ids[order[0]], ids[order[1]]}
            assert done.envelope.correlation_id == flow
            assert done.event.inputs == ("join.a", "join.b", "join.c")  # type: ignore[attr-defined]


async def test_another_event_of_a_joined_type_changes_nothing(
    engine: AsyncEngine, cat: JoinCatalog
) -> None:
    service, join = join_service(cat, engine)
    await join.create_tables()
    async with ServiceKit(service) as kit:
        for model in cat.inputs:
            await kit.deliver(model(order_id="o-1"), correlation_id="flow-1")
        late = await kit.deliver(cat.inputs[0](order_id="o-1"), correlation_id="flow-1")
        assert late.published == ()


async def test_an_input_of_another_flow_is_refused(engine: AsyncEngine, cat: JoinCatalog) -> None:
    service, join = join_service(cat, engine)
    await join.create_tables()
    async with ServiceKit(service) as kit:
        await kit.deliver(cat.inputs[0](order_id="o-1"), correlation_id="flow-1")
        foreign = await kit.deliver(cat.inputs[1](order_id="o-1"), correlation_id="flow-2")
        assert foreign.published == ()
        assert [d.error_type for d in foreign.dead_letters] == [KeyConflictError.__name__]


async def test_a_passed_deadline_publishes_one_timeout_event(
    engine: AsyncEngine, cat: JoinCatalog
) -> None:
    service, join = join_service(cat, engine, deadline=timedelta(seconds=30))
    await join.create_tables()
    async with ServiceKit(service) as kit:
        a = await kit.deliver(cat.inputs[0](order_id="o-1"), correlation_id="flow-1")
        b = await kit.deliver(cat.inputs[1](order_id="o-1"), correlation_id="flow-1")
        assert await join.expire() == 0  # not yet
        later = datetime.now(UTC) + timedelta(seconds=31)
        before = len(kit.published())
        assert timedelta(seconds=30) == join.deadline
        assert await join.expire(later) == 1
        assert await join.expire(later) == 0  # once
        [timeout] = kit.published()[before:]
        assert timeout.type == "join.timed_out"
        assert timeout.event.arrived == ("join.a", "join.b")  # type: ignore[attr-defined]
        assert a.envelope is not None
        assert b.envelope is not None
        assert timeout.envelope.causation_id == a.envelope.id
        assert timeout.envelope.joined_ids == (b.envelope.id,)
        assert timeout.envelope.correlation_id == "flow-1"
        late = await kit.deliver(cat.inputs[2](order_id="o-1"), correlation_id="flow-1")
        assert late.published == ()  # the deadline completed the join


def test_a_join_declaration_is_checked(engine: AsyncEngine, cat: JoinCatalog) -> None:
    async def output(_joined: Joined) -> Event | None:
        return None

    def declare(**overrides: object) -> None:
        arguments: dict[str, object] = {
            "inputs": cat.inputs,
            "engine": engine,
            "output": output,
            **overrides,
        }
        Join(Service("s", registry=cat.registry), "j", **arguments)  # type: ignore[arg-type]

    with pytest.raises(ConfigurationError, match="2 to 8 distinct"):
        declare(inputs=cat.inputs[:1])
    with pytest.raises(ConfigurationError, match="2 to 8 distinct"):
        declare(inputs=(cat.inputs[0], cat.inputs[0]))
    with pytest.raises(ConfigurationError, match="a deadline needs on_timeout"):
        declare(deadline=timedelta(seconds=1))
    with pytest.raises(ConfigurationError, match="lacks"):
        declare(key="customer_id")
    with pytest.raises(ConfigurationError, match="join name"):
        Join(
            Service("s2", registry=cat.registry),
            "Bad Name",
            inputs=cat.inputs,
            engine=engine,
            output=output,
        )


def test_the_observer_draws_a_join_output_with_a_parent_per_input() -> None:
    nodes = [
        Node("root", "order.placed", 1, None, "orders"),
        Node("a", "stock.reserved", 2, "root", "inventory"),
        Node("b", "payment.authorized", 3, "a", "payments"),
        Node("out", "shipment.completed", 4, "root", "shipping", joined=("b",)),
    ]
    graph = FlowGraph("root", nodes)
    assert ("root", "out") in graph.edges
    assert ("b", "out") in graph.edges
    assert graph.children["b"] == ("out",)
    assert graph.is_connected_tree("order.placed")
