"""The JSON shapes of the observer's API (they are the OpenAPI document's schemas)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from choreokit.services.saga_observer.orchestrations import OrchestrationRunView


class _View(BaseModel):
    model_config = ConfigDict(frozen=True)


class ExpectedStepView(_View):
    """A step a flow waits for."""

    reason: str = Field(
        description="next-step, compensation, missing-cause (an event names a cause never "
        "seen), missing-start, or awaiting-approval (a checkpoint waits for a person)"
    )
    one_of: list[str] = Field(description="Event types, one of which is expected.")
    after_id: str | None = Field(
        None, description="The event it would follow; for missing-cause, the missing cause's id."
    )
    after_type: str | None = None
    services: list[str] = Field(
        default_factory=list,
        description="Services seen publishing the expected types (from the topology).",
    )
    checkpoint: str | None = Field(
        None, description="awaiting-approval: the checkpoint's step name (POST it as step)."
    )
    roles: list[str] = Field(
        default_factory=list, description="awaiting-approval: who may approve or reject."
    )


class FlowSummary(_View):
    """One flow, as listed."""

    correlation_id: str
    saga: str | None = Field(description="The saga spec judging it; null: none knows its events.")
    status: str = Field(
        description="running, completed, failed, compensated, failed-uncompensated, stalled, "
        "rejected (every event refused by consumers, none causing another), or untracked "
        "(no spec)."
    )
    root_id: str | None
    root_type: str | None
    connected: bool = Field(
        description="Whether the causation graph is one tree rooted at the saga's start event."
    )
    started_at: datetime
    last_event_at: datetime
    ended_at: datetime | None
    deadline: datetime | None
    duration_ms: int | None
    end_type: str | None
    event_count: int
    duplicates: int = Field(description="Extra copies of its events (redeliveries), not counted.")
    dead_letters: int
    orphans: int = Field(description="Events whose cause has not been seen.")
    expected: list[ExpectedStepView]
    missing_compensations: list[str]
    services: list[str]


class FlowPage(_View):
    """A page of flows."""

    items: list[FlowSummary]
    total: int
    limit: int
    offset: int


class EventView(_View):
    """One event of a flow (without its payload)."""

    id: str
    type: str
    dataversion: int
    source: str
    service: str
    time: datetime
    causation_id: str | None
    cause_type: str | None = Field(description="The cause's type, if the cause was seen.")
    orphan: bool = Field(description="It names a cause that has not been seen.")
    depth: int = Field(description="Distance from the root in the causation graph.")
    latency_ms: float | None = Field(description="Time from its cause to it.")
    trace_id: str | None
    topic: str
    partition: int
    offset: int
    deliveries: int = Field(description="How many copies were read (1 + redeliveries).")
    size: int
    joined: list[str] = Field(
        default_factory=list,
        description="For a join's output: the other inputs it joined (ce_joined), parents too.",
    )


class EventDetail(EventView):
    """One event with its payload."""

    correlation_id: str
    traceparent: str | None
    payload: Any = Field(description="The JSON payload; null if it was larger than the limit.")
    payload_truncated: bool
    jaeger_url: str | None


class EdgeView(_View):
    """A causation edge."""

    cause: str
    effect: str


class GraphView(_View):
    """The flow's causation graph."""

    root_id: str | None
    root_type: str | None
    connected: bool = Field(
        description="One tree, rooted at the saga's start, reaching every event."
    )
    roots: list[str] = Field(description="Events that name no cause.")
    orphans: list[str] = Field(description="Events whose named cause has not been seen.")
    missing_causes: list[str] = Field(description="Ids named as causes but never seen.")
    edges: list[EdgeView]
    depth: int


class ServiceTiming(_View):
    """What one service did in a flow."""

    service: str
    events: int
    first_at: datetime
    last_at: datetime
    reactions: int = Field(description="Its events whose cause was seen.")
    reaction_ms_total: float
    reaction_ms_mean: float | None
    reaction_ms_max: float | None


class TraceView(_View):
    """A trace the flow's events belong to."""

    trace_id: str
    events: int
    jaeger_url: str


class DeadLetterView(_View):
    """A record a consumer gave up on."""

    key: str
    correlation_id: str | None
    event_id: str | None
    event_type: str | None
    error_type: str
    error_message: str
    group: str | None
    attempts: int | None
    failed_at: datetime
    original_topic: str | None
    original_partition: int | None
    original_offset: int | None
    topic: str
    partition: int
    offset: int
    copies: int
    id: str = Field(description="``<dlq topic>/<partition>/<offset>``: the id to replay.")
    status: str = Field(
        default="dead", description="dead, replayed, resolved, failed or purged (audit topic)."
    )
    status_at: datetime | None = None
    fingerprint: str | None = Field(default=None, description="The failure group.")
    error_frame: str | None = Field(default=None, description="Where the error was raised.")


class FailureGroupView(_View):
    """Dead letters that failed the same way: error type, normalised message, top frame."""

    fingerprint: str
    error_type: str
    message: str
    frame: str
    count: int
    first_seen: datetime
    last_seen: datetime
    groups: int = Field(description="How many consumer groups failed this way.")


class ReplayRequest(_View):
    """What to replay: the dead letter as it is, or with a corrected payload."""

    data: dict[str, Any] | None = Field(
        default=None, description="A corrected payload, validated against the event's schema."
    )
    to_topic: str | None = Field(default=None, max_length=249)
    force: bool = Field(default=False, description="Replay a resolved or purged one too.")


class ReplayView(_View):
    """The outcome of a replay request."""

    dead_letter: str
    replay_id: str
    topic: str
    group: str | None
    result: str
    error: str | None
    operator: str


class DeadLetterPage(_View):
    """A page of dead letters."""

    items: list[DeadLetterView]
    total: int
    limit: int
    offset: int


class LifecycleView(_View):
    """A lifecycle event (``saga.*``) of the flow."""

    id: str
    type: str
    status: str
    caused_by: str | None
    created_at: datetime
    sent_at: datetime | None
    observed: bool = Field(description="Read back from the topic.")


class SagaView(_View):
    """A saga spec."""

    name: str
    description: str
    start: str
    success: list[str]
    failure: list[str]
    steps: dict[str, list[str]]
    compensations: dict[str, str]
    timeout_seconds: float
    deadlines_seconds: dict[str, float] = Field(
        default_factory=dict, description="Step deadlines: for a step type, seconds to the next."
    )


class FlowDetail(FlowSummary):
    """One flow with everything known about it."""

    events: list[EventView] = Field(description="By time, then id.")
    graph: GraphView
    timings: list[ServiceTiming]
    traces: list[TraceView]
    jaeger_search_url: str
    dead_letter_records: list[DeadLetterView]
    lifecycle: list[LifecycleView]
    spec: SagaView | None
    orchestrations: list[OrchestrationRunView] = Field(
        default_factory=list,
        description="In-service orchestration runs (their steps) by time, each under the "
        "service that ran it, from the flow's orchestration.run events.",
    )


class Counts(_View):
    """Flows by status."""

    total: int
    by_status: dict[str, int] = Field(description="Every status, zero included.")


class Percentiles(_View):
    """Latency percentiles in milliseconds (nearest rank)."""

    p50: float
    p90: float
    p99: float
    max: float
    samples: int


class PublishView(_View):
    """A service publishing an event type."""

    service: str
    event_type: str
    count: int


class LinkView(_View):
    """Events of one type caused events of another, across two services."""

    from_service: str
    cause_type: str
    to_service: str
    effect_type: str
    count: int


class ReactionView(_View):
    """A service reacting to an event type (it published events that type caused)."""

    event_type: str
    service: str
    count: int
    produces: list[str]
    latency_ms: Percentiles | None


class TopologyView(_View):
    """Who publishes what, and who reacts to what."""

    services: list[str]
    event_types: list[str]
    publishers: list[PublishView]
    reactions: list[ReactionView]
    links: list[LinkView]
    latency_sample: int = Field(description="Most recent reactions the percentiles are taken from.")


class Facets(_View):
    """Values the list filters take."""

    statuses: list[str]
    sagas: list[str]
    event_types: list[str]
    services: list[str]


class RejectView(_View):
    """A record that is not an event at all."""

    topic: str
    partition: int
    offset: int
    error_type: str
    error_message: str
    key: str | None
    size: int
    time: datetime


class RejectPage(_View):
    """A page of rejected records."""

    items: list[RejectView]
    total: int
    limit: int
    offset: int


class AuditView(_View):
    """One write action an operator took through the observer."""

    id: int
    at: datetime
    actor: str
    role: str
    action: str
    target: str
    reason: str
    detail: dict[str, Any]
    result: str


class AuditPage(_View):
    """A page of the audit log, newest first."""

    items: list[AuditView]
    total: int


class PositionView(_View):
    """Where the group stands on one partition (stored with the projection)."""

    topic: str
    partition: int
    next_offset: int


class Stats(_View):
    """What the observer holds and where it stands."""

    flows: int
    events: int
    duplicates: int
    dead_letters: int
    rejects: int
    lifecycle_pending: int
    lifecycle_sent: int
    group: str
    positions: list[PositionView]
    instance: InstanceView


class InstanceView(_View):
    """This instance's consumer."""

    client_id: str
    assigned: list[str]
    lag: int


class Health(_View):
    """Liveness of the instance."""

    status: str
    database: str
    consumer: str


class Problem(_View):
    """An RFC 9457 problem: what was wrong with the request."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[dict[str, Any]] | None = None


Stats.model_rebuild()


class LatencyView(_View):
    """Time between two steps in milliseconds (nearest rank)."""

    p50: float
    p95: float
    max: float
    samples: int


class WaitingView(_View):
    """Flows waiting at a step now (the next step has not happened yet)."""

    running: int
    stalled: int
    overdue: int = Field(description="Of these, waiting past the step's deadline.")


class MapNode(_View):
    """A step of the saga map: an event type of the spec."""

    id: str = Field(description="The event type.")
    kind: str = Field(description="start, step, success, failure or compensation.")
    depth: int = Field(description="Steps from the start (for drawing in columns).")
    deadline_seconds: float | None = Field(
        None, description="The step's own deadline (to the next step), if it has one."
    )
    passed: int = Field(description="Flows of the window with an event of this type.")
    waiting: WaitingView
    flows_url: str = Field(description="The flows that passed, in the flow list API.")
    waiting_url: str = Field(description="The flows waiting here now, in the flow list API.")


class MapEdge(_View):
    """A transition of the saga map: events of ``target`` caused by events of ``source``."""

    source: str
    target: str
    kind: str = Field(
        description="step (the spec's steps), compensation (a failure end to a required "
        "compensation) or unexpected (seen, but not in the spec)."
    )
    count: int = Field(description="Flows of the window that took this transition.")
    latency_ms: LatencyView | None
    flows_url: str


class SagaMapView(_View):
    """A saga spec drawn as a graph, with live figures for a time window."""

    saga: str
    since: datetime | None = Field(description="Flows started at or after (null: no bound).")
    until: datetime | None
    now: datetime
    flows: int = Field(description="Flows of the saga started in the window.")
    nodes: list[MapNode]
    edges: list[MapEdge]
    latency_sample: int = Field(description="Most recent transitions the latencies are taken from.")


class FailurePatternView(_View):
    """Stalled and failed flows that ended (or stopped) alike."""

    last_step: str = Field(description="The type of the flow's latest event.")
    fingerprint: str | None = Field(description="Its latest open dead letter's failure group.")
    error_type: str | None
    message: str | None
    count: int
    by_status: dict[str, int]
    example: str = Field(description="One such flow's correlation id.")
    flows_url: str


class FailurePatternsView(_View):
    """A saga's failure patterns, largest first."""

    saga: str
    total: int = Field(description="Stalled and failed flows grouped.")
    statuses: list[str]
    patterns: list[FailurePatternView]
