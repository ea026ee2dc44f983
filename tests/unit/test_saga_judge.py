"""Judging flows: statuses and expected next steps come from the causation graph, not arrival."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from choreokit.services.example.contracts.saga import ORDER_SAGA
from choreokit.services.saga_observer import (
    FlowGraph,
    Node,
    Reason,
    Refusal,
    SagaCatalog,
    Status,
    judge,
)
from choreokit.services.saga_observer.judge import INVALID_EVENT_ERRORS
from choreokit.services.saga_observer.lifecycle import lifecycle_id, transition
from choreokit.services.saga_observer.records import micros
from tests.order_flows import EXPECTED_STATUS, Flow, Outcome, order_flow

CATALOG = SagaCatalog([ORDER_SAGA])
START = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
BEFORE_DEADLINE = micros(START + timedelta(seconds=5))
AFTER_DEADLINE = micros(START + ORDER_SAGA.timeout + timedelta(seconds=5))


def nodes(flow: Flow) -> list[Node]:
    return [
        Node(s.event_id, s.event.event_info().type, micros(s.time), s.causation_id, s.service)
        for s in flow.steps
    ]


def flow_of(outcome: Outcome, index: int = 1) -> Flow:
    return order_flow(outcome, index=index, rng=random.Random(index), start=START)


@pytest.mark.parametrize("outcome", list(Outcome))
def test_each_outcome_gets_its_status_once_the_timeout_has_passed(outcome: Outcome) -> None:
    flow = flow_of(outcome)
    verdict = judge(FlowGraph(flow.correlation_id, nodes(flow)), CATALOG, AFTER_DEADLINE)
    assert verdict.status == EXPECTED_STATUS[outcome]
    assert verdict.saga == "order"
    assert verdict.connected


@pytest.mark.parametrize(
    ("outcome", "status"),
    [
        (Outcome.HAPPY, Status.COMPLETED),
        (Outcome.OUT_OF_STOCK, Status.FAILED),
        (Outcome.PAYMENT_DECLINED, Status.COMPENSATED),
        (Outcome.CARRIER_FAILURE, Status.COMPENSATED),
        (Outcome.STOPS_AT_PAYMENT, Status.RUNNING),
        (Outcome.UNCOMPENSATED, Status.RUNNING),
    ],
)
def test_before_the_timeout_unfinished_flows_are_running(outcome: Outcome, status: Status) -> None:
    flow = flow_of(outcome)
    verdict = judge(FlowGraph(flow.correlation_id, nodes(flow)), CATALOG, BEFORE_DEADLINE)
    assert verdict.status is status


def test_a_flow_stopped_short_expects_the_next_step_of_its_spec() -> None:
    flow = flow_of(Outcome.STOPS_AT_PAYMENT)
    verdict = judge(FlowGraph(flow.correlation_id, nodes(flow)), CATALOG, AFTER_DEADLINE)
    assert verdict.status is Status.STALLED
    (step,) = verdict.expected
    assert step.reason is Reason.NEXT_STEP
    assert step.one_of == ("payment.authorized", "payment.declined", "approval.requested")
    assert step.after_type == "stock.reserved"
    assert step.after_id == flow.steps[1].event_id


def test_a_missing_compensation_is_expected_then_fails_the_flow() -> None:
    flow = flow_of(Outcome.UNCOMPENSATED)
    graph = FlowGraph(flow.correlation_id, nodes(flow))
    running = judge(graph, CATALOG, BEFORE_DEADLINE)
    (step,) = running.expected
    assert step.reason is Reason.COMPENSATION
    assert step.one_of == ("stock.released",)
    assert step.after_type == "order.cancelled"
    late = judge(graph, CATALOG, AFTER_DEADLINE)
    assert late.status is Status.FAILED_UNCOMPENSATED
    assert late.missing == ("stock.released",)


def test_an_effect_before_its_cause_waits_for_the_cause() -> None:
    flow = flow_of(Outcome.PAYMENT_DECLINED)
    everything = nodes(flow)
    reserved = everything[1]
    without_cause = [n for n in everything if n is not reserved]
    graph = FlowGraph(flow.correlation_id, without_cause)
    # order.cancelled is there, but what happened before it (a reservation) is not known yet:
    # the flow must not be judged "failed" with nothing to compensate.
    verdict = judge(graph, CATALOG, BEFORE_DEADLINE)
    assert verdict.status is Status.RUNNING
    assert not verdict.connected
    assert [o.id for o in graph.orphans] == [everything[2].id]
    missing = [e for e in verdict.expected if e.reason is Reason.MISSING_CAUSE]
    assert [e.after_id for e in missing] == [reserved.id]
    assert judge(graph, CATALOG, AFTER_DEADLINE).status is Status.STALLED
    placed = judge(FlowGraph(flow.correlation_id, everything), CATALOG, BEFORE_DEADLINE)
    assert placed.status is Status.COMPENSATED
    assert placed.connected


def test_a_flow_whose_start_never_arrives_says_so() -> None:
    flow = flow_of(Outcome.HAPPY)
    graph = FlowGraph(flow.correlation_id, nodes(flow)[1:])
    verdict = judge(graph, CATALOG, AFTER_DEADLINE)
    assert verdict.saga == "order"
    assert verdict.status is Status.STALLED
    assert verdict.expected[0].reason is Reason.MISSING_START
    assert verdict.expected[0].one_of == ("order.placed",)


def test_a_flow_no_spec_knows_is_untracked() -> None:
    graph = FlowGraph("c1", [Node("c1", "user.signed_up", 1, None, "accounts")])
    verdict = judge(graph, CATALOG, AFTER_DEADLINE)
    assert verdict.status is Status.UNTRACKED
    assert verdict.saga is None
    assert verdict.deadline_us is None
    assert transition(graph, verdict, AFTER_DEADLINE) is None


@settings(max_examples=60, deadline=None)
@given(
    outcome=st.sampled_from(list(Outcome)),
    seed=st.integers(0, 10_000),
    cut=st.integers(0, 8),
)
def test_the_verdict_depends_on_the_events_not_on_their_order(
    outcome: Outcome, seed: int, cut: int
) -> None:
    flow = flow_of(outcome, index=seed)
    events = nodes(flow)
    shuffled = list(events)
    random.Random(seed).shuffle(shuffled)
    # any subset that arrived so far (a prefix of the shuffled order) judges alike
    arrived = shuffled[: max(1, len(shuffled) - cut)]
    in_order = [n for n in events if n in arrived]
    for now in (BEFORE_DEADLINE, AFTER_DEADLINE):
        a = judge(FlowGraph(flow.correlation_id, arrived), CATALOG, now)
        b = judge(FlowGraph(flow.correlation_id, in_order), CATALOG, now)
        assert a == b


def test_a_final_verdict_needs_the_whole_causal_history() -> None:
    """No subset of a flow's events judges final unless it holds every ancestor of its end."""
    for outcome in (Outcome.PAYMENT_DECLINED, Outcome.CARRIER_FAILURE, Outcome.OUT_OF_STOCK):
        flow = flow_of(outcome)
        events = nodes(flow)
        final = judge(FlowGraph(flow.correlation_id, events), CATALOG, BEFORE_DEADLINE).status
        for size in range(1, len(events)):
            for start in range(len(events) - size + 1):
                subset = events[:start] + events[start + size :]
                status = judge(FlowGraph(flow.correlation_id, subset), CATALOG, BEFORE_DEADLINE)
                assert not status.status.final or status.status is final, (outcome, subset)


def test_the_graph_knows_trees_roots_orphans_and_depth() -> None:
    a = Node("a", "order.placed", 1, None, "orders")
    b = Node("b", "stock.reserved", 2, "a", "inventory")
    c = Node("c", "payment.declined", 3, "b", "payments")
    stray = Node("s", "order.placed", 4, None, "orders")
    orphan = Node("o", "order.cancelled", 5, "missing", "orders")
    tree = FlowGraph("a", [c, a, b])
    assert tree.is_connected_tree("order.placed")
    assert not tree.is_connected_tree("other.start")
    assert tree.edges == (("a", "b"), ("b", "c"))
    assert tree.depth() == {"a": 0, "b": 1, "c": 2}
    assert not FlowGraph("a", [a, b, stray]).is_connected_tree()
    with_orphan = FlowGraph("a", [a, b, orphan])
    assert [n.id for n in with_orphan.orphans] == ["o"]
    assert not with_orphan.is_connected_tree()
    cycle = FlowGraph("x", [Node("x", "t", 1, "y", "s"), Node("y", "t", 2, "x", "s")])
    assert not cycle.is_connected_tree()
    assert cycle.depth() == {"x": 0, "y": 0}


def test_lifecycle_events_have_ids_derived_from_the_flow() -> None:
    flow = flow_of(Outcome.CARRIER_FAILURE)
    graph = FlowGraph(flow.correlation_id, nodes(flow))
    verdict = judge(graph, CATALOG, BEFORE_DEADLINE)
    change = transition(graph, verdict, BEFORE_DEADLINE)
    assert change is not None
    assert change.type == "saga.compensated"
    assert change.id == lifecycle_id(flow.correlation_id, "saga.compensated")
    assert change.id != lifecycle_id(flow.correlation_id, "saga.failed")
    assert change.caused_by in {flow.steps[-1].event_id, flow.steps[-2].event_id}
    stalled = flow_of(Outcome.STOPS_AT_PAYMENT)
    sgraph = FlowGraph(stalled.correlation_id, nodes(stalled))
    stall = transition(sgraph, judge(sgraph, CATALOG, AFTER_DEADLINE), AFTER_DEADLINE)
    assert stall is not None
    assert stall.type == "saga.stalled"
    expected = '"one_of":["payment.authorized","payment.declined","approval.requested"]'
    assert expected in stall.payload
    assert transition(sgraph, judge(sgraph, CATALOG, BEFORE_DEADLINE), BEFORE_DEADLINE) is None


PLACED = Node("p1", "order.placed", micros(START), None, "partners")
START_US = micros(START)


def refusal(event: Node, group: str, error: str, after_s: float = 1) -> Refusal:
    return Refusal(event.id, event.type, group, error, START_US + int(after_s * 1e6))


def test_an_invalid_start_refused_by_a_consumer_is_rejected_at_once() -> None:
    graph = FlowGraph("p1", [PLACED])
    refused = [refusal(PLACED, "inventory", "InvalidPayloadError")]
    verdict = judge(graph, CATALOG, BEFORE_DEADLINE, refused)
    assert verdict.status is Status.REJECTED
    assert verdict.refused == tuple(refused)
    assert verdict.ended_us == refused[0].at_us
    assert verdict.expected == ()
    change = transition(graph, verdict, BEFORE_DEADLINE)
    assert change is not None
    assert change.type == "saga.rejected"
    assert change.caused_by == "p1"
    assert '"error_type":"InvalidPayloadError"' in change.payload
    assert '"group":"inventory"' in change.payload
    # The same refusals in any order, with other groups' copies: the same verdict.
    more = [*refused, refusal(PLACED, "orders", "InvalidPayloadError", 2)]
    assert judge(graph, CATALOG, BEFORE_DEADLINE, more[::-1]).refused == tuple(more)


def test_a_start_refused_for_a_key_conflict_only_is_rejected_at_the_deadline() -> None:
    """Another consumer may still accept it: the flow runs until its deadline."""
    graph = FlowGraph("p1", [PLACED])
    refused = [refusal(PLACED, "orders", "KeyConflictError")]
    assert judge(graph, CATALOG, BEFORE_DEADLINE, refused).status is Status.RUNNING
    assert judge(graph, CATALOG, AFTER_DEADLINE, refused).status is Status.REJECTED
    # Without the refusal (resolved by a replay, say) it stalls, as any flow that did not end.
    assert judge(graph, CATALOG, AFTER_DEADLINE).status is Status.STALLED


def test_a_foreign_cancel_without_a_start_refused_everywhere_ends_rejected_not_stalled() -> None:
    cancel = Node("c1", "order.cancelled", START_US, None, "orders")
    graph = FlowGraph("c1", [cancel])
    refused = [
        refusal(cancel, "inventory", "KeyConflictError"),
        refusal(cancel, "payments", "KeyConflictError"),
    ]
    assert judge(graph, CATALOG, BEFORE_DEADLINE, refused).status is Status.RUNNING
    verdict = judge(graph, CATALOG, AFTER_DEADLINE, refused)
    assert verdict.status is Status.REJECTED
    assert {r.group for r in verdict.refused} == {"inventory", "payments"}
    change = transition(graph, verdict, AFTER_DEADLINE)
    assert change is not None
    assert change.caused_by == "c1"


def test_a_refused_start_that_caused_a_failure_event_is_judged_as_usual() -> None:
    """A consumer's refusal published stock.rejected: the flow failed, and compensates as its
    spec says; nothing is rejected."""
    rejected = Node("r1", "stock.rejected", START_US + 1000, "p1", "inventory")
    cancelled = Node("x1", "order.cancelled", START_US + 2000, "r1", "orders")
    graph = FlowGraph("p1", [PLACED, rejected, cancelled])
    refused = [refusal(PLACED, "inventory", "InvalidPayloadError")]
    assert judge(graph, CATALOG, AFTER_DEADLINE, refused).status is Status.FAILED


def test_a_flow_with_an_event_nobody_refused_is_not_rejected() -> None:
    reserved = Node("s2", "stock.reserved", START_US + 10, None, "rogue")
    graph = FlowGraph("p1", [PLACED, reserved])
    refused = [refusal(PLACED, "inventory", "InvalidPayloadError")]
    assert judge(graph, CATALOG, AFTER_DEADLINE, refused).status is Status.STALLED
    everything = [*refused, refusal(reserved, "payments", "KeyConflictError")]
    assert judge(graph, CATALOG, BEFORE_DEADLINE, everything).status is Status.RUNNING
    assert judge(graph, CATALOG, AFTER_DEADLINE, everything).status is Status.REJECTED
    # Refusals of events that are not the flow's (or name none) change nothing.
    stray = [Refusal("", None, "inventory", "InvalidPayloadError", START_US)]
    assert judge(graph, CATALOG, AFTER_DEADLINE, stray).status is Status.STALLED


def test_rejected_is_not_final_and_every_decode_error_counts_as_invalid() -> None:
    assert not Status.REJECTED.final
    assert {"InvalidPayloadError", "MalformedJsonError", "InvalidEnvelopeError"} <= (
        INVALID_EVENT_ERRORS
    )
    assert "KeyConflictError" not in INVALID_EVENT_ERRORS
    assert "DecodeError" not in INVALID_EVENT_ERRORS
