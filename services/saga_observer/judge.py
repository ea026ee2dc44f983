"""Judging a flow: its status and the step(s) expected next, from its graph and its spec.

The judgement is a pure function of the flow's events (as a set), the refusals
of them by consumers (open dead letters, as a set), its spec and the time of
judgement, so any order of arrival leads to the same result.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from choreokit.events import DecodeError, Fallback, SagaSpec
from choreokit.services.saga_observer.catalog import SagaCatalog
from choreokit.services.saga_observer.graph import FlowGraph, Node


class Status(StrEnum):
    """Where a flow stands."""

    RUNNING = "running"
    """Started, not ended, still within its timeout."""

    COMPLETED = "completed"
    """Reached a success end."""

    FAILED = "failed"
    """Reached a failure end with nothing to compensate."""

    COMPENSATED = "compensated"
    """Reached a failure end, and every compensation it requires happened."""

    FAILED_UNCOMPENSATED = "failed-uncompensated"
    """Reached a failure end, but a required compensation is missing after the timeout."""

    STALLED = "stalled"
    """No end within the timeout."""

    REJECTED = "rejected"
    """Nothing of the flow was accepted: consumers refused (dead-lettered) every one of its
    events and none of them caused another. Judged at once when every event is invalid in
    itself (a payload or envelope no consumer can decode), else at the deadline. A later
    effect or a replay that succeeds moves the flow on, as for a stalled one."""

    UNTRACKED = "untracked"
    """No saga spec knows the flow's events: recorded and shown, never judged."""

    @property
    def final(self) -> bool:
        """Whether nothing that arrives later can change the status."""
        return self in _FINAL


_FINAL = frozenset({Status.COMPLETED, Status.FAILED, Status.COMPENSATED})


class Reason(StrEnum):
    """Why a step is expected."""

    NEXT_STEP = "next-step"
    """The spec says one of these types follows the event."""

    COMPENSATION = "compensation"
    """The flow failed and this compensation is required."""

    MISSING_CAUSE = "missing-cause"
    """An event names a cause that has not been seen."""

    MISSING_START = "missing-start"
    """The flow's start event has not been seen."""

    AWAITING_APPROVAL = "awaiting-approval"
    """The flow waits at a checkpoint for a person to approve or reject."""


def _names(error: type[BaseException]) -> frozenset[str]:
    found = {error.__name__}
    for sub in error.__subclasses__():
        found |= _names(sub)
    return frozenset(found)


INVALID_EVENT_ERRORS = _names(DecodeError) - {DecodeError.__name__}
"""Errors a consumer dead-letters an event with when the event itself is invalid (its
envelope, content type or payload breaks the contract): every consumer of the type decodes
it with the same models, so every one refuses it."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """A consumer gave up on one of the flow's events: an open (unresolved) dead letter.

    Attributes:
        event_id: The refused event's ``ce_id``.
        event_type: Its type, as the dead letter names it.
        group: The consumer group that refused it.
        error_type: The error it was dead-lettered with.
        at_us: When it was dead-lettered.
    """

    event_id: str
    event_type: str | None
    group: str | None
    error_type: str
    at_us: int

    @property
    def invalid(self) -> bool:
        """Whether the event itself is invalid: no consumer can ever accept it."""
        return self.error_type in INVALID_EVENT_ERRORS


@dataclass(frozen=True, slots=True)
class Expectation:
    """A step the flow is waiting for.

    Attributes:
        reason: Why it is expected.
        one_of: The event types, one of which is expected.
        after_id: The event it is expected to follow (or the missing cause's id).
        after_type: That event's type, if known.
        checkpoint: The checkpoint's step name (``awaiting-approval``).
        roles: Who may decide at that checkpoint.
    """

    reason: Reason
    one_of: tuple[str, ...]
    after_id: str | None = None
    after_type: str | None = None
    checkpoint: str | None = None
    roles: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready form."""
        found: dict[str, object] = {
            "reason": self.reason.value,
            "one_of": list(self.one_of),
            "after_id": self.after_id,
            "after_type": self.after_type,
        }
        if self.checkpoint is not None:
            found["checkpoint"] = self.checkpoint
            found["roles"] = list(self.roles)
        return found


@dataclass(frozen=True, slots=True)
class Judgement:
    """The verdict on one flow at one moment.

    Attributes:
        status: The flow's status.
        saga: The spec's name (``None``: no spec knows the flow).
        root: The root event, if present.
        connected: Whether the flow is one tree rooted at the spec's start event.
        deadline_us: When the flow must have ended (``None`` for untracked flows, and
            while it waits at a checkpoint without a deadline).
        end: The end event (success or failure), if reached.
        ended_us: When the flow ended (the end, or its last required compensation).
        required: Compensations the failure requires.
        missing: Required compensations not (yet) seen.
        expected: What the flow waits for (running, stalled and
            failed-uncompensated flows).
        refused: The refusals that rejected the flow (rejected flows only).
    """

    status: Status
    saga: str | None
    root: Node | None
    connected: bool
    deadline_us: int | None
    end: Node | None
    ended_us: int | None
    required: tuple[str, ...]
    missing: tuple[str, ...]
    expected: tuple[Expectation, ...]
    refused: tuple[Refusal, ...] = ()


def judge(
    graph: FlowGraph, catalog: SagaCatalog, now_us: int, refusals: Iterable[Refusal] = ()
) -> Judgement:
    """Judge ``graph`` against the spec that fits it, at time ``now_us``.

    ``refusals`` are the open dead letters of the flow's events (any order).
    """
    first_root = graph.root()
    spec = catalog.for_flow(first_root.type if first_root else None, graph.types.keys())
    if spec is None:
        root = graph.root()
        return Judgement(
            status=Status.UNTRACKED,
            saga=None,
            root=root,
            connected=graph.is_connected_tree(),
            deadline_us=None,
            end=None,
            ended_us=None,
            required=(),
            missing=(),
            expected=(),
        )
    return _judge(graph, spec, now_us, refusals)


def _judge(graph: FlowGraph, spec: SagaSpec, now_us: int, refusals: Iterable[Refusal]) -> Judgement:
    root = graph.root(spec.start)
    has_start = root is not None and root.type == spec.start
    begin = root.time_us if root is not None else min(n.time_us for n in graph)
    paused = _paused(graph, spec)
    deadline = None if paused is None else begin + _micros(spec) + paused
    overdue = deadline is not None and now_us >= deadline
    refused = _refused_entirely(graph, refusals)
    if refused and (overdue or _all_invalid(graph, refused)):
        return Judgement(
            status=Status.REJECTED,
            saga=spec.name,
            root=root,
            connected=graph.is_connected_tree(spec.start),
            deadline_us=deadline,
            end=None,
            ended_us=max(r.at_us for r in refused),
            required=(),
            missing=(),
            expected=(),
            refused=refused,
        )
    failure = _first(graph, spec.failure)
    success = _first(graph, spec.success)
    end = failure or success
    required = spec.required_compensations(graph.types) if failure else ()
    missing = tuple(t for t in required if t not in graph.types)
    # A flow with a gap in its causal history is judged when the gap closes: until the
    # start and every named cause are present, what happened cannot be known.
    gaps: list[Expectation] = []
    if not has_start:
        gaps.append(Expectation(Reason.MISSING_START, (spec.start,)))
    gaps += [
        Expectation(Reason.MISSING_CAUSE, (), after_id=n.causation_id, after_type=None)
        for n in graph.orphans
    ]
    expected: list[Expectation] = []
    ended: int | None = None
    if gaps:
        status = Status.STALLED if overdue else Status.RUNNING
        expected = [*gaps, *_next_steps(graph, spec)]
    elif failure is not None:
        if not required:
            status = Status.FAILED
            ended = failure.time_us
        elif not missing:
            status = Status.COMPENSATED
            ended = max(failure.time_us, *(_first_time(graph, t) for t in required))
        else:
            status = Status.FAILED_UNCOMPENSATED if overdue else Status.RUNNING
            expected = [
                Expectation(Reason.COMPENSATION, (t,), after_id=failure.id, after_type=failure.type)
                for t in missing
            ]
    elif success is not None:
        status = Status.COMPLETED
        ended = success.time_us
    else:
        status = Status.STALLED if overdue else Status.RUNNING
        expected = _next_steps(graph, spec)
    return Judgement(
        status=status,
        saga=spec.name,
        root=root,
        connected=graph.is_connected_tree(spec.start),
        deadline_us=deadline,
        end=end,
        ended_us=ended,
        required=required,
        missing=missing,
        expected=tuple(expected),
    )


def _refused_entirely(graph: FlowGraph, refusals: Iterable[Refusal]) -> tuple[Refusal, ...]:
    """The refusals, if consumers refused every event of the flow and none caused another.

    An event that caused another was accepted somewhere (a failure event published on a
    consumer's behalf when it gave up counts too: the flow then fails and compensates as
    its spec says), so such a flow is judged as usual. Empty: the flow was not refused
    entirely.
    """
    if graph.edges or not len(graph):
        return ()
    by_event: dict[str, list[Refusal]] = defaultdict(list)
    for refusal in refusals:
        if refusal.event_id in graph.nodes:
            by_event[refusal.event_id].append(refusal)
    if len(by_event) != len(graph):
        return ()
    return tuple(
        sorted(
            (r for found in by_event.values() for r in found),
            key=lambda r: (r.at_us, r.event_id, r.group or "", r.error_type),
        )
    )


def _all_invalid(graph: FlowGraph, refused: tuple[Refusal, ...]) -> bool:
    """Whether every event of the flow was refused as invalid in itself by some consumer."""
    invalid = {r.event_id for r in refused if r.invalid}
    return len(invalid) == len(graph)


def _paused(graph: FlowGraph, spec: SagaSpec) -> int | None:
    """Microseconds the flow waited at checkpoints (they do not count against its timeout).

    A decided checkpoint paused the flow from its request to the first decision;
    an undecided one pauses it until its deadline (when the fallback decides), or
    without end (no deadline, or escalation): ``None``.
    """
    paused = 0
    for point in spec.checkpoints.values():
        request = graph.first_of(point.requested)
        if request is None:
            continue
        asked = request.time_us
        decided = [n.time_us for t in point.decisions if (n := graph.first_of(t)) is not None]
        if decided:
            paused += max(0, min(decided) - asked)
        elif point.deadline is not None and point.fallback is not Fallback.ESCALATE:
            paused += int(point.deadline.total_seconds() * 1_000_000)
        else:
            return None
    return paused


def _next_steps(graph: FlowGraph, spec: SagaSpec) -> list[Expectation]:
    """For each event the spec has steps for, the steps none of its effects took yet."""
    found = []
    steps, children, nodes = spec.steps, graph.children, graph.nodes
    checkpoints = bool(spec.checkpoints)
    for node in graph:
        following = steps.get(node.type)
        if not following:
            continue
        point = spec.checkpoint_of(node.type) if checkpoints else None
        if point is not None:
            # A decision may come from any producer, with or without a causation id:
            # any decision in the flow ends the wait.
            if not any(t in graph.types for t in point.decisions):
                found.append(
                    Expectation(
                        Reason.AWAITING_APPROVAL,
                        following,
                        after_id=node.id,
                        after_type=node.type,
                        checkpoint=point.step,
                        roles=point.roles,
                    )
                )
            continue
        effects = children.get(node.id)
        if effects is None or not any(nodes[c].type in following for c in effects):
            found.append(
                Expectation(Reason.NEXT_STEP, following, after_id=node.id, after_type=node.type)
            )
    return found


def _first(graph: FlowGraph, types: tuple[str, ...]) -> Node | None:
    """The earliest event of one of ``types``."""
    found = [n for t in types if (n := graph.first_of(t)) is not None]
    if len(found) <= 1:
        return found[0] if found else None
    return min(found, key=lambda n: (n.time_us, n.id))


def _first_time(graph: FlowGraph, event_type: str) -> int:
    first = graph.first_of(event_type)
    assert first is not None  # a required compensation that is not missing
    return first.time_us


def _micros(spec: SagaSpec) -> int:
    return int(spec.timeout.total_seconds() * 1_000_000)
