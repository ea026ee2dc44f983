"""Human checkpoints on the wire: a flow asks a person, a person (or a deadline) answers.

A service that needs a person's decision publishes :class:`ApprovalRequested`
in the flow and waits (durably: ``docs/orchestration.md``). The decision comes
as :class:`ApprovalGranted` or :class:`ApprovalRejected`, from the saga
observer's approve/reject buttons and API (an authenticated operator, audited),
from the gateway, or from any producer; :class:`ApprovalEscalated` says a
checkpoint's deadline passed and someone else must decide. All four ride the
``approvals`` topic, keyed by the flow like every event of it.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from choreokit.events._attributes import MAX_ATTRIBUTE_LENGTH
from choreokit.events._model import Event
from choreokit.events._registry import default_registry

APPROVALS_TOPIC = "approvals"
"""The topic of the approval events."""

MAX_REASON_LENGTH = 2_000
"""The longest reason an approval event carries."""

_Flow = Annotated[str, Field(min_length=1, max_length=MAX_ATTRIBUTE_LENGTH)]
_Step = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")]
_Actor = Annotated[str, Field(min_length=1, max_length=256)]
_Reason = Annotated[str, Field(max_length=MAX_REASON_LENGTH)]
_Role = Annotated[str, Field(min_length=1, max_length=32)]


class ApprovalRequested(
    Event, type="approval.requested", version=1, topic=APPROVALS_TOPIC, registry=default_registry
):
    """A flow waits at a checkpoint until a person decides.

    Attributes:
        flow: The flow's correlation id (the envelope's, repeated for readers of the payload).
        step: The checkpoint's name in the saga spec, e.g. ``payment``.
        summary: One line for the person who decides (no sensitive data).
        roles: Who may decide, e.g. ``["operator"]``.
    """

    flow: _Flow
    step: _Step
    summary: Annotated[str, Field(max_length=500)] = ""
    roles: Annotated[tuple[_Role, ...], Field(min_length=1, max_length=8)] = ("operator",)


class ApprovalGranted(
    Event, type="approval.granted", version=1, topic=APPROVALS_TOPIC, registry=default_registry
):
    """A person (or the checkpoint's deadline fallback) approved; the flow goes on.

    Attributes:
        flow: The flow's correlation id.
        step: The checkpoint's name.
        actor: Who decided (an operator's name; ``deadline`` for a fallback).
        reason: Why, as the person gave it.
        by_deadline: Whether the checkpoint's deadline decided, not a person.
    """

    flow: _Flow
    step: _Step
    actor: _Actor
    reason: _Reason = ""
    by_deadline: bool = False


class ApprovalRejected(
    Event, type="approval.rejected", version=1, topic=APPROVALS_TOPIC, registry=default_registry
):
    """A person (or the checkpoint's deadline fallback) rejected; the flow fails and compensates.

    Attributes:
        flow: The flow's correlation id.
        step: The checkpoint's name.
        actor: Who decided (an operator's name; ``deadline`` for a fallback).
        reason: Why, as the person gave it.
        by_deadline: Whether the checkpoint's deadline decided, not a person.
    """

    flow: _Flow
    step: _Step
    actor: _Actor
    reason: _Reason = ""
    by_deadline: bool = False


class ApprovalEscalated(
    Event, type="approval.escalated", version=1, topic=APPROVALS_TOPIC, registry=default_registry
):
    """A checkpoint's deadline passed undecided and its fallback is to escalate; it still waits.

    Attributes:
        flow: The flow's correlation id.
        step: The checkpoint's name.
        reason: What passed, for whoever handles escalations.
    """

    flow: _Flow
    step: _Step
    reason: _Reason = ""


APPROVAL_EVENTS: tuple[type[Event], ...] = (
    ApprovalRequested,
    ApprovalGranted,
    ApprovalRejected,
    ApprovalEscalated,
)
"""Every approval event class."""
