"""Human checkpoints in specs, the judgement and the observer's store and API (SQLite, in memory):
a flow awaiting approval is running whatever its timeout says, a decision is recorded once per
flow and checkpoint (and published once through the outbox), a deadline's fallback loses to an
earlier decision, and 401/403/422 change nothing."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import func, select

from choreokit.events import (
    ApprovalGranted,
    ApprovalRequested,
    Checkpoint,
    ConfigurationError,
    Fallback,
    SagaSpec,
)
from choreokit.services.example.contracts.saga import ORDER_SAGA
from choreokit.services.runtime.access import AccessPolicy, Role, TokenStore, hash_token
from choreokit.services.saga_observer import SagaCatalog, schema
from choreokit.services.saga_observer.api import build_api
from choreokit.services.saga_observer.approvals import (
    ApprovalError,
    Decided,
    DecisionRequest,
    decision_id,
)
from choreokit.services.saga_observer.audit import AuditLog
from choreokit.services.saga_observer.graph import FlowGraph, Node
from choreokit.services.saga_observer.judge import Reason, Status, judge
from choreokit.services.saga_observer.metrics import ObserverMetrics
from choreokit.services.saga_observer.queries import Queries
from choreokit.services.saga_observer.records import micros
from choreokit.services.saga_observer.store import Store
from tests.order_flows import Flow, Outcome, Step, as_records, mix
from tests.unit.test_saga_api import FakeInstance
from tests.unit.test_saga_store import NOW, Fed, opened

S = 1_000_000
MINUTE = 60 * S


def spec(point: Checkpoint) -> SagaSpec:
    return SagaSpec.declare(
        "review",
        start="doc.submitted",
        success=["doc.published"],
        failure=["doc.withdrawn"],
        steps={
            "doc.submitted": ["approval.requested"],
            "approval.granted": ["doc.published"],
            "approval.rejected": ["doc.withdrawn"],
        },
        checkpoints=[point],
        timeout=timedelta(seconds=60),
    )


def node(event_id: str, event_type: str, at_us: int, cause: str | None) -> Node:
    return Node(event_id, event_type, at_us, cause, "svc")


def graph(*nodes: Node) -> FlowGraph:
    return FlowGraph("flow-1", nodes)


def test_a_checkpoint_is_a_step_with_its_decisions_and_deadline() -> None:
    review = spec(Checkpoint(step="review", deadline=timedelta(hours=2)))
    assert review.steps["approval.requested"] == ("approval.granted", "approval.rejected")
    assert review.deadlines["approval.requested"] == timedelta(hours=2)
    assert review.checkpoint_named("review") is review.checkpoint_of("approval.requested")
    yaml_form = SagaSpec.model_validate(
        {
            "name": "review",
            "start": "doc.submitted",
            "success": ["doc.published"],
            "checkpoints": [{"step": "review", "deadline": "2h", "fallback": "escalate"}],
        }
    )
    assert yaml_form.checkpoints["approval.requested"].fallback is Fallback.ESCALATE


@pytest.mark.parametrize(
    ("point", "message"),
    [
        ({"step": "a", "deadline": "31d"}, "at most 30 days"),
        ({"step": "a", "granted": "approval.rejected"}, "four different types"),
        ({"step": "Not A Name"}, "step"),
    ],
)
def test_invalid_checkpoints_are_refused(point: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Checkpoint.model_validate(point)


def test_a_checkpoint_whose_step_names_other_types_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="its next types must be"):
        SagaSpec.declare(
            "bad",
            start="a.b",
            success=["c.d"],
            steps={"approval.requested": ["x.y"]},
            checkpoints=[Checkpoint(step="a")],
        )


def test_a_flow_awaiting_approval_is_running_past_the_saga_timeout() -> None:
    review = SagaCatalog([spec(Checkpoint(step="review"))])
    flow = graph(node("s", "doc.submitted", 0, None), node("r", "approval.requested", S, "s"))
    verdict = judge(flow, review, now_us=24 * 60 * MINUTE)
    assert verdict.status is Status.RUNNING
    assert verdict.deadline_us is None  # no deadline at the checkpoint: it waits for ever
    (waiting,) = verdict.expected
    assert waiting.reason is Reason.AWAITING_APPROVAL
    assert (waiting.checkpoint, waiting.roles, waiting.after_id) == ("review", ("operator",), "r")


def test_time_at_a_checkpoint_does_not_count_against_the_timeout() -> None:
    review = SagaCatalog([spec(Checkpoint(step="review", deadline=timedelta(minutes=10)))])
    asked = graph(node("s", "doc.submitted", 0, None), node("r", "approval.requested", S, "s"))
    # undecided: the flow's deadline moves by the checkpoint's deadline
    assert judge(asked, review, now_us=5 * MINUTE).deadline_us == MINUTE + 10 * MINUTE
    decided = graph(
        node("s", "doc.submitted", 0, None),
        node("r", "approval.requested", S, "s"),
        node("g", "approval.granted", S + 30 * MINUTE, "r"),
    )
    verdict = judge(decided, review, now_us=30 * MINUTE + 2 * S)
    assert verdict.status is Status.RUNNING
    assert verdict.deadline_us == MINUTE + 30 * MINUTE  # the 30 minutes waited are added
    assert [e.one_of for e in verdict.expected] == [("doc.published",)]
    assert judge(decided, review, now_us=32 * MINUTE).status is Status.STALLED


@dataclass
class Scene:
    store: Store
    flow: Flow
    request: Step
    fed: Fed


def waiting_flow() -> tuple[Flow, Step]:
    (flow,) = mix(1, outcomes=[Outcome.STOPS_AT_PAYMENT], start=NOW)
    reserved = flow.steps[-1]
    request = Step(
        event=ApprovalRequested(flow=flow.correlation_id, step="payment"),
        event_id=str(uuid.uuid4()),
        correlation_id=flow.correlation_id,
        causation_id=reserved.event_id,
        service="payments",
        time=reserved.time + timedelta(milliseconds=3),
    )
    return Flow(flow.correlation_id, flow.outcome, (*flow.steps, request)), request


@pytest.fixture
async def scene(tmp_path: Path) -> AsyncIterator[Scene]:
    async with opened(tmp_path / "db.sqlite3") as (store, _queries):
        flow, request = waiting_flow()
        fed = Fed(store)
        await fed.feed(as_records(flow.steps), batch=50)
        yield Scene(store, flow, request, fed)


def decision(scene: Scene, *, approve: bool = True, step: str = "payment") -> DecisionRequest:
    return DecisionRequest(
        correlation_id=scene.flow.correlation_id,
        step=step,
        approve=approve,
        actor="ops-anna",
        role="operator",
        reason="known customer",
    )


async def outbox(store: Store, event_type: str) -> int:
    async with store._engine.connect() as conn:
        return int(
            (
                await conn.execute(
                    select(func.count())
                    .select_from(schema.lifecycle)
                    .where(schema.lifecycle.c.type == event_type)
                )
            ).scalar_one()
        )


async def test_a_decision_is_recorded_once_and_published_once(scene: Scene) -> None:
    first = await scene.store.decide(decision(scene), micros(NOW))
    assert first.recorded
    assert first.event_id == decision_id(scene.flow.correlation_id, "payment")
    again = await scene.store.decide(decision(scene), micros(NOW) + S)
    assert not again.recorded
    assert (again.actor, again.at_us) == (first.actor, first.at_us)
    with pytest.raises(ApprovalError, match="already approved") as refused:
        await scene.store.decide(decision(scene, approve=False), micros(NOW))
    assert refused.value.status == 409
    assert await outbox(scene.store, "approval.granted") == 1
    assert await outbox(scene.store, "approval.rejected") == 0


async def test_a_decision_needs_a_flow_waiting_at_that_checkpoint(scene: Scene) -> None:
    with pytest.raises(ApprovalError) as unknown:
        await scene.store.decide(
            DecisionRequest("no-such-flow", "payment", True, "ops", "operator", "x"), 0
        )
    assert unknown.value.status == 404
    with pytest.raises(ApprovalError, match="does not wait at a checkpoint") as elsewhere:
        await scene.store.decide(decision(scene, step="shipping"), micros(NOW))
    assert elsewhere.value.status == 409


async def test_the_deadline_fallback_rejects_an_undecided_flow_once(scene: Scene) -> None:
    past = micros(NOW) + int(timedelta(days=1, seconds=1).total_seconds() * S)
    changes = await scene.store.sweep_steps(past)
    types = sorted(c.type for c in changes)
    assert types == ["approval.rejected", "saga.step_overdue"]
    assert await scene.store.sweep_steps(past + S) == []
    with pytest.raises(ApprovalError, match="already rejected"):
        await scene.store.decide(decision(scene), past + 2 * S)


async def test_a_decision_before_the_deadline_wins_over_the_fallback(scene: Scene) -> None:
    await scene.store.decide(decision(scene), micros(NOW))
    past = micros(NOW) + int(timedelta(days=2).total_seconds() * S)
    changes = await scene.store.sweep_steps(past)
    assert "approval.rejected" not in {c.type for c in changes}
    assert await outbox(scene.store, "approval.rejected") == 0


async def test_a_decision_from_another_producer_ends_the_wait(scene: Scene) -> None:
    """E.g. through the gateway: the flow no longer awaits approval; the observer refuses."""
    granted = Step(
        event=ApprovalGranted(flow=scene.flow.correlation_id, step="payment", actor="gateway-k"),
        event_id=str(uuid.uuid4()),
        correlation_id=scene.flow.correlation_id,
        causation_id=scene.request.event_id,
        service="gateway",
        time=scene.request.time + timedelta(seconds=5),
    )
    offsets = {(r.topic, r.partition): r.offset + 1 for r in as_records(scene.flow.steps)}
    await scene.fed.feed(as_records([granted], start_offsets=offsets), batch=10)
    with pytest.raises(ApprovalError, match="does not wait at a checkpoint"):
        await scene.store.decide(decision(scene), micros(NOW))
    assert await outbox(scene.store, "approval.granted") == 0


OPERATOR, VIEWER = "choreo_op_token", "choreo_view_token"


@pytest.fixture
async def client(scene: Scene, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    tokens = TokenStore(
        [("anna", Role.OPERATOR, hash_token(OPERATOR)), ("vic", Role.VIEWER, hash_token(VIEWER))]
    )
    engine = scene.store._engine
    store = scene.store

    class Desk:
        async def decide(self, request: DecisionRequest) -> Decided:
            return await store.decide(request, micros(NOW))

    app = build_api(
        queries=Queries(engine, SagaCatalog([ORDER_SAGA]), group="observer", jaeger_url="http://j"),
        catalog=SagaCatalog([ORDER_SAGA]),
        metrics=ObserverMetrics(CollectorRegistry()),
        instance=FakeInstance(),
        max_page_size=50,
        access=AccessPolicy(tokens=tokens, allowed_hosts=("observer",)),
        audit=AuditLog(engine, engine, lambda: micros(NOW)),
        desk=Desk(),
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://observer") as http:
        yield http


async def test_the_api_refuses_anonymous_viewers_and_malformed_decisions(
    client: httpx.AsyncClient, scene: Scene
) -> None:
    path = f"/api/flows/{scene.flow.correlation_id}/approvals"
    body = {"step": "payment", "decision": "approve", "reason": "ok"}
    assert (await client.post(path, json=body)).status_code == 401
    viewer = {"Authorization": f"Bearer {VIEWER}"}
    assert (await client.post(path, json=body, headers=viewer)).status_code == 403
    operator = {"Authorization": f"Bearer {OPERATOR}"}
    for bad in (
        {**body, "reason": ""},
        {**body, "decision": "maybe"},
        {**body, "reason": "x" * 2001},
        {**body, "step": "../etc"},
        {**body, "extra": 1},
    ):
        assert (await client.post(path, json=bad, headers=operator)).status_code == 422
    assert await outbox(scene.store, "approval.granted") == 0
    audit = (await client.get("/api/audit", headers=operator)).json()
    assert audit["total"] == 0
    made = await client.post(path, json=body, headers=operator)
    assert made.status_code == 200
    assert (made.json()["actor"], made.json()["result"]) == ("anna", "recorded")
    (entry,) = (await client.get("/api/audit", headers=operator)).json()["items"]
    assert (entry["actor"], entry["action"], entry["reason"]) == ("anna", "approval.approve", "ok")
    unknown = await client.post("/api/flows/nope/approvals", json=body, headers=operator)
    assert unknown.status_code == 404


async def test_the_published_decision_read_back_is_observed_and_ends_the_wait(
    scene: Scene,
) -> None:
    made = await scene.store.decide(decision(scene), micros(NOW))
    granted = Step(
        event=ApprovalGranted(flow=scene.flow.correlation_id, step="payment", actor="ops-anna"),
        event_id=made.event_id,
        correlation_id=scene.flow.correlation_id,
        causation_id=scene.request.event_id,
        service="saga-observer",
        time=scene.request.time + timedelta(seconds=5),
    )
    offsets = {(r.topic, r.partition): r.offset + 1 for r in as_records(scene.flow.steps)}
    await scene.fed.feed(as_records([granted], start_offsets=offsets), batch=10)
    async with scene.store._engine.connect() as conn:
        row = (
            await conn.execute(
                select(schema.lifecycle.c.observed).where(schema.lifecycle.c.id == made.event_id)
            )
        ).one()
        flow = (
            await conn.execute(
                select(schema.flows.c.expected).where(
                    schema.flows.c.correlation_id == scene.flow.correlation_id
                )
            )
        ).one()
    assert row.observed
    assert "awaiting-approval" not in flow.expected
    (step,) = json.loads(flow.expected)
    assert (step["reason"], step["after_type"]) == ("next-step", "approval.granted")
    assert step["one_of"] == ["payment.authorized", "payment.declined"]
