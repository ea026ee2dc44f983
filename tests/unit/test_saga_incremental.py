"""Re-judging a flow from its cached graph, extended, answers as judging it from scratch.

The store keeps an open flow's graph between batches and extends it with the batch's
new events (``FlowGraph.extended``) instead of building it again from all of them. Any
split of a flow's events into batches, in any order, with orphans, joins and dead
letters, must give the same graph, verdict, waits, flow row and transition.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from choreokit.services.example.contracts.saga import ORDER_SAGA
from choreokit.services.saga_observer import FlowGraph, Node, Refusal, SagaCatalog, judge
from choreokit.services.saga_observer.judge import INVALID_EVENT_ERRORS, Expectation, Reason
from choreokit.services.saga_observer.lifecycle import transition
from choreokit.services.saga_observer.records import micros
from choreokit.services.saga_observer.store import _expected_json, _flow_values
from choreokit.services.saga_observer.waits import waits_of
from tests.order_flows import as_records, mix, steps_of
from tests.unit.test_saga_store import Fed, opened

CATALOG = SagaCatalog([ORDER_SAGA])
START = micros(datetime(2026, 11, 21, 12, 0, tzinfo=UTC))
TYPES = sorted(ORDER_SAGA.types | {"unknown.type"})
SECOND = 1_000_000


@st.composite
def flows(draw: st.DrawFn) -> tuple[list[Node], list[list[Node]], list[Refusal], int]:
    """A flow's events (unique ids), a split of them into batches, refusals and a moment."""
    count = draw(st.integers(1, 10))
    ids = [f"e{i}" for i in range(count)]
    some_id = st.sampled_from([*ids, "gone-1", "gone-2"])
    nodes = []
    for i, event_id in enumerate(ids):
        cause = (
            draw(st.one_of(st.none(), some_id)) if i else draw(st.sampled_from([None, "gone-1"]))
        )
        joined = tuple(draw(st.lists(some_id, max_size=2))) if draw(st.integers(0, 4)) == 0 else ()
        nodes.append(
            Node(
                event_id,
                draw(st.sampled_from(TYPES)),
                START + draw(st.integers(0, 8)) * SECOND,  # ties: ordered by id then
                cause,
                draw(st.sampled_from(["orders", "payments", "inventory"])),
                joined,
            )
        )
    shuffled = draw(st.permutations(nodes))
    cuts = sorted(draw(st.lists(st.integers(0, count), max_size=4)))
    batches = [shuffled[a:b] for a, b in zip([0, *cuts], [*cuts, count], strict=True)]
    refusals = [
        Refusal(
            draw(st.sampled_from([*ids, "gone-1"])),
            None,
            draw(st.sampled_from(["g1", "g2"])),
            draw(st.sampled_from(["RuntimeError", next(iter(INVALID_EVENT_ERRORS))])),
            START + draw(st.integers(0, 9)) * SECOND,
        )
        for _ in range(draw(st.integers(0, 3)))
    ]
    now = START + draw(st.sampled_from([1, 20, 59, 61, 120, 3600])) * SECOND
    return nodes, batches, refusals, now


def shape(graph: FlowGraph) -> dict[str, Any]:
    return {
        "nodes": list(graph),
        "children": graph.children,
        "edges": graph.edges,
        "types": dict(graph.types),
        "roots": graph.roots,
        "orphans": graph.orphans,
        "first_of": {t: graph.first_of(t) for t in TYPES},
        "services": graph.services,
        "depth": graph.depth(),
        "root": graph.root(ORDER_SAGA.start),
        "tree": graph.is_connected_tree(ORDER_SAGA.start),
    }


def answers(graph: FlowGraph, refusals: list[Refusal], now: int) -> tuple[Any, ...]:
    verdict = judge(graph, CATALOG, now, refusals)
    spec = CATALOG.get(verdict.saga) if verdict.saga else None
    return (
        verdict,
        waits_of(graph, verdict, spec),
        _flow_values(graph, verdict, 2, len(refusals), now),
        transition(graph, verdict, now),
    )


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flows(), st.sampled_from(["e0", "flow-x"]))
def test_a_flow_judged_batch_by_batch_is_judged_as_from_scratch(
    flow: tuple[list[Node], list[list[Node]], list[Refusal], int], cid: str
) -> None:
    nodes, batches, refusals, now = flow
    graph = FlowGraph(cid, ())
    seen: list[Node] = []
    for batch in batches:
        graph = graph.extended(batch)
        seen += batch
        scratch = FlowGraph(cid, seen)
        assert shape(graph) == shape(scratch)
        if len(scratch):
            assert answers(graph, refusals, now) == answers(scratch, refusals, now)
    assert shape(graph) == shape(FlowGraph(cid, nodes))


def test_a_later_event_extends_the_graph_without_building_it_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What makes a re-judge cheap: the cached graph grows by the new events only."""
    chain = [Node(f"e{i}", "t", START + i, f"e{i - 1}" if i else None, "s") for i in range(50)]
    graph = FlowGraph("e0", chain[:49])
    orphan = FlowGraph("e0", [*chain[:3], Node("late", "t", START + 99, "cause", "s")])
    built: list[int] = []
    original = FlowGraph.__init__

    def counting(self: FlowGraph, cid: str, nodes: Any) -> None:
        built.append(1)
        original(self, cid, nodes)

    monkeypatch.setattr(FlowGraph, "__init__", counting)
    grown = graph.extended([chain[49]])
    assert built == []
    assert grown.edges[-1] == ("e48", "e49")
    assert len(graph) == 49  # the cached graph is not changed
    # An event before the latest, or the missing cause of one here: built again.
    assert graph.extended([Node("early", "t", START - 1, None, "s")]) is not graph
    assert built == [1]
    orphan.extended([Node("cause", "t", START + 100, "e2", "s")])
    assert built == [1, 1]


def test_an_end_stamped_before_its_start_is_a_flow_of_no_duration() -> None:
    """Producers' clocks differ: the transition is still an event (it used to fail validation)."""
    placed = Node("e0", ORDER_SAGA.start, START + 5 * SECOND, None, "orders")
    confirmed = Node("e1", ORDER_SAGA.success[0], START, "e0", "orders")
    graph = FlowGraph("e0", [placed, confirmed])
    verdict = judge(graph, CATALOG, START + 10 * SECOND)
    change = transition(graph, verdict, START + 10 * SECOND)
    assert change is not None
    assert change.type == "saga.completed"
    assert '"duration_ms":0' in change.payload


async def test_the_store_extends_an_open_flows_cached_graph(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A flow judged in an earlier batch is judged from its cached graph, not built again."""
    (flow,) = mix(1)
    records = as_records(steps_of([flow]))
    built: list[str] = []
    original = FlowGraph.__init__

    def counting(self: FlowGraph, cid: str, nodes: Any) -> None:
        built.append(cid)
        original(self, cid, nodes)

    monkeypatch.setattr(FlowGraph, "__init__", counting)
    async with opened(tmp_path / "db.sqlite3") as (store, queries):
        fed = Fed(store)
        await fed.feed(records[:2], batch=2)
        assert built == [flow.correlation_id]  # its first batch: built from its events
        for record in records[2:]:
            await fed.feed([record], batch=1)
        assert built == [flow.correlation_id]
        detail = await queries.flow(flow.correlation_id)
        assert detail is not None
        assert detail.status == flow.expected_status


def test_a_flow_without_its_start_finds_its_spec_without_recomputing_the_specs_types(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each spec's types are taken once per catalog, not per flow judged before its start."""
    catalog = SagaCatalog([ORDER_SAGA])
    computed: list[str] = []
    original: property = vars(type(ORDER_SAGA))["types"]
    assert original.fget is not None
    types_of = original.fget

    def counting(spec: Any) -> frozenset[str]:
        computed.append(spec.name)
        return frozenset(types_of(spec))

    monkeypatch.setattr(type(ORDER_SAGA), "types", property(counting))
    payment = Node("e1", "payment.authorized", START, "e0", "payments")
    for _ in range(3):
        assert catalog.for_flow(None, {payment.type}) is ORDER_SAGA
        assert catalog.for_flow(None, {"unknown.type"}) is None
    assert computed == []
    catalog.update(SagaCatalog([ORDER_SAGA]))
    assert computed == ["order"]  # the new catalog's, once
    assert catalog.for_flow("stock.reserved", {"stock.reserved"}) is ORDER_SAGA


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.builds(
            Expectation,
            st.sampled_from(list(Reason)),
            st.lists(st.text(max_size=4), max_size=3).map(tuple),
            after_id=st.one_of(st.none(), st.text(max_size=4)),
            after_type=st.one_of(st.none(), st.text(max_size=4)),
            checkpoint=st.one_of(st.none(), st.text(max_size=4)),
            roles=st.lists(st.text(max_size=3), max_size=2).map(tuple),
        ),
        max_size=3,
    ).map(tuple)
)
def test_the_flow_rows_expected_steps_are_the_json_they_were(
    expected: tuple[Expectation, ...],
) -> None:
    """Written directly, the column holds the text ``json.dumps`` of ``as_dict`` gave."""
    assert _expected_json(expected) == json.dumps([e.as_dict() for e in expected])
