"""Saga specs as contracts: what ``choreo sagas check`` finds wrong with a spec, offline.

A :class:`~choreokit.events.SagaSpec` that validates is well-formed; it can still
be wrong about the system: name a type nobody declares, list an end no step leads
to, or ask for a compensation that no failure can ever require. These checks read
the spec as a graph (``start`` and ``steps``) against a registry of declared events,
and name the field of each problem. :func:`saga_diagram` draws the same graph as
a Mermaid flowchart, for docs.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from choreokit.events._registry import Registry
from choreokit.events._saga import SagaSpec


@dataclass(frozen=True, slots=True)
class SagaProblem:
    """Something wrong with a saga spec.

    Attributes:
        saga: The spec's name.
        field: The field at fault, e.g. ``steps.stock.reserved`` or ``success[0]``.
        message: What is wrong and what to do.
    """

    saga: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"saga {self.saga!r}: {self.field}: {self.message}"


def _fields(spec: SagaSpec) -> Iterator[tuple[str, str]]:
    """Every ``(field, type)`` the spec names, in the order a reader meets them."""
    yield "start", spec.start
    for i, t in enumerate(spec.success):
        yield f"success[{i}]", t
    for i, t in enumerate(spec.failure):
        yield f"failure[{i}]", t
    for after, following in spec.steps.items():
        yield f"steps.{after}", after
        for i, t in enumerate(following):
            yield f"steps.{after}[{i}]", t
    for happened, required in spec.compensations.items():
        yield f"compensations.{happened}", happened
        yield f"compensations.{happened}", required


def reachable(spec: SagaSpec) -> set[str]:
    """The types a flow can reach from ``start`` by following ``steps``."""
    seen = {spec.start}
    stack = [spec.start]
    while stack:
        for t in spec.steps.get(stack.pop(), ()):
            if t not in seen:
                seen.add(t)
                stack.append(t)
    return seen


def check_saga(spec: SagaSpec, registry: Registry | None = None) -> list[SagaProblem]:
    """Find what is wrong with ``spec`` as a contract (an empty list: nothing).

    Args:
        spec: The spec.
        registry: The declared events; ``None`` skips the unknown-type check.

    Checks, each naming its field: types the registry does not know; ends, steps
    and compensated types no path of ``steps`` from ``start`` reaches (only when
    the spec has steps: without them the observer knows no path); compensations
    of a saga without failure ends; step deadlines not shorter than the timeout.
    """
    found = [
        *(_unknown_types(spec, registry) if registry is not None else ()),
        *(_unreachable(spec) if spec.steps else ()),
        *_never_required(spec),
        *_deadlines(spec),
    ]
    return [SagaProblem(spec.name, field, message) for field, message in found]


def _unknown_types(spec: SagaSpec, registry: Registry) -> Iterator[tuple[str, str]]:
    reported: set[tuple[str, str]] = set()
    for field, t in _fields(spec):
        if not registry.knows(t) and (field, t) not in reported:
            reported.add((field, t))
            yield (
                field,
                f"{t!r} is not a declared event type; declare it (or fix the spelling), "
                "and name its module with --events if it is declared elsewhere",
            )


def _unreachable(spec: SagaSpec) -> Iterator[tuple[str, str]]:
    found = reachable(spec)
    for kind, ends in (("success", spec.success), ("failure", spec.failure)):
        for i, t in enumerate(ends):
            if t not in found:
                yield (
                    f"{kind}[{i}]",
                    f"the end {t!r} is unreachable: no step from {spec.start!r} leads to "
                    "it; add it to the 'steps' of the event that precedes it",
                )
    for after in spec.steps:
        if after not in found:
            yield (
                f"steps.{after}",
                f"the step after {after!r} can never be reached: no step from "
                f"{spec.start!r} leads to {after!r}",
            )
    for happened in spec.compensations:
        if happened not in found:
            yield (
                f"compensations.{happened}",
                f"can never be required: no step from {spec.start!r} leads to {happened!r}",
            )


def _never_required(spec: SagaSpec) -> Iterator[tuple[str, str]]:
    if spec.failure:
        return
    for happened in spec.compensations:
        yield (
            f"compensations.{happened}",
            "can never be required: the saga has no failure end, and only a failure "
            "requires compensations",
        )


def _deadlines(spec: SagaSpec) -> Iterator[tuple[str, str]]:
    for after, deadline in spec.deadlines.items():
        # Time spent waiting for a person does not count against the saga's timeout.
        if deadline >= spec.timeout and after not in spec.checkpoints:
            yield (
                f"steps.{after}.deadline",
                f"{deadline} is not shorter than the saga's timeout ({spec.timeout}): the "
                "flow stalls before the step is overdue; shorten it or drop it",
            )


def saga_diagram(spec: SagaSpec) -> str:
    """The spec as a Mermaid flowchart: steps as arrows (with deadlines), ends as shapes.

    Success ends are drawn as stadiums, failure ends as hexagons, compensations
    as dotted arrows from the type they undo.
    """
    ids: dict[str, str] = {}

    def node(t: str) -> str:
        return ids.setdefault(t, f"n{len(ids)}")

    order = [spec.start]
    for after, following in spec.steps.items():
        order += [after, *following]
    order += [*spec.success, *spec.failure]
    for happened, required in spec.compensations.items():
        order += [happened, required]
    for t in order:
        node(t)
    success, failure = set(spec.success), set(spec.failure)
    compensating = set(spec.compensations.values())
    lines = ["flowchart LR"]
    for t, n in ids.items():
        label = t.replace('"', "'")
        if t == spec.start:
            lines.append(f'  {n}(("{label}"))')
        elif t in success:
            lines.append(f'  {n}(["{label}"]):::success')
        elif t in failure:
            lines.append(f'  {n}{{{{"{label}"}}}}:::failure')
        elif t in compensating:
            lines.append(f'  {n}["{label}"]:::compensation')
        else:
            lines.append(f'  {n}["{label}"]')
    for after, following in spec.steps.items():
        deadline = spec.deadlines.get(after)
        arrow = f"-->|within {_short(deadline.total_seconds())}|" if deadline else "-->"
        lines.extend(f"  {ids[after]} {arrow} {ids[t]}" for t in following)
    for happened, required in spec.compensations.items():
        lines.append(f"  {ids[happened]} -.->|compensated by| {ids[required]}")
    lines += [
        "  classDef success fill:#d4edda,stroke:#2e7d32",
        "  classDef failure fill:#f8d7da,stroke:#c62828",
        "  classDef compensation fill:#fff3cd,stroke:#a67c00",
    ]
    return "\n".join(lines) + "\n"


def _short(seconds: float) -> str:
    if seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    if seconds % 60 == 0 and seconds >= 60:  # noqa: PLR2004 - a minute
        return f"{int(seconds // 60)}m"
    return f"{seconds:g}s"
