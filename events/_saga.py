"""Saga specs: what a flow of one kind must do to count as completed, failed or compensated.

A spec names event *types* (strings). In Python it is declared next to the
events with the event classes themselves (:meth:`SagaSpec.declare`) and
published through the ``choreokit.sagas`` entry point; teams that prefer YAML
list the same fields in a file (:func:`sagas_from_yaml`). The saga observer
judges flows by them (``docs/saga-observer.md``).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import timedelta
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from choreokit.events._codec import describe_validation_error
from choreokit.events._errors import ConfigurationError
from choreokit.events._model import Event
from choreokit.events._settings import Duration

SAGAS_GROUP = "choreokit.sagas"
"""Entry-point group whose entries name a :class:`SagaSpec` (or a sequence of them)."""

EventRef = str | type[Event]
"""An event type: its name (``"order.placed"``) or an event class."""

_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


MAX_STEP_DEADLINE = timedelta(days=30)
"""The longest deadline a step may have."""


def _type_name(ref: EventRef) -> str:
    if isinstance(ref, str):
        return ref
    return ref.event_info().type


class SagaStep(BaseModel):
    """A step with its own deadline: what must follow an event, and by when.

    Used as a value of :attr:`SagaSpec.steps` instead of a plain list of types
    (``steps={StockReserved: SagaStep([PaymentAuthorized, PaymentDeclined],
    deadline=timedelta(seconds=30))}``); in YAML, ``{next: [...], deadline: 30s}``.

    Attributes:
        next: The types one of which is expected to follow.
        deadline: How long after the event that makes the flow wait here the next
            step must have happened; the observer publishes ``saga.step_overdue``
            once it passes.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    next: tuple[str, ...] = Field(min_length=1)
    deadline: Duration | None = None

    def __init__(self, following: Iterable[EventRef] | None = None, /, **data: Any) -> None:
        # The types may come first and as event classes: SagaStep([A, B], deadline=...).
        given = data.pop("next", following)
        if given is not None and not isinstance(given, str):
            given = tuple(_type_name(t) for t in given)
        super().__init__(next=given, **data)


class SagaSpec(BaseModel):
    """What a flow started by ``start`` must do.

    Attributes:
        name: The saga's name, e.g. ``order`` (shown as the flow's saga type).
        start: The type of the event that starts a flow of this saga.
        success: Types that end the flow successfully (``completed``).
        failure: Types that end the flow unsuccessfully (``failed``, or
            ``compensated`` once every required compensation happened).
        steps: For a type, the types one of which is expected to follow it in
            the causation graph; this is where a running or stalled flow's
            *expected next step* comes from. A value may be a :class:`SagaStep`
            (the types and a deadline); its deadline is kept in ``deadlines``.
        deadlines: For a type of ``steps``, how long after an event of that type
            the next step must have happened (a *step deadline*, besides the
            whole flow's ``timeout``).
        compensations: For a type that happened, the type that must happen once
            the flow failed (``stock.reserved`` -> ``stock.released``).
        timeout: How long after the start event the flow must have ended
            (with every required compensation) before it is judged ``stalled``
            or ``failed-uncompensated``.
        description: A line for the UI.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")
    start: str
    success: tuple[str, ...] = Field(min_length=1)
    failure: tuple[str, ...] = ()
    steps: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    compensations: dict[str, str] = Field(default_factory=dict)
    timeout: Duration = timedelta(seconds=60)
    description: str = ""
    deadlines: dict[str, Duration] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _split_steps(cls, data: Any) -> Any:
        """Steps given as :class:`SagaStep` (or ``{next, deadline}``) keep their deadline apart."""
        if not isinstance(data, dict) or not isinstance(data.get("steps"), Mapping):
            return data
        steps: dict[Any, Any] = {}
        deadlines: dict[Any, Any] = dict(data.get("deadlines") or {})
        for after, value in data["steps"].items():
            step = value
            if isinstance(value, Mapping):
                step = SagaStep.model_validate(value)
            if isinstance(step, SagaStep):
                steps[after] = step.next
                if step.deadline is not None:
                    if after in deadlines:
                        raise ValueError(f"the deadline of step {after!r} is given twice")
                    deadlines[after] = step.deadline
            else:
                steps[after] = value
        return {**data, "steps": steps, "deadlines": deadlines}

    @field_validator("start")
    @classmethod
    def _start_is_a_type(cls, value: str) -> str:
        return _checked_type(value)

    @field_validator("success", "failure")
    @classmethod
    def _ends_are_types(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_checked_type(v) for v in value)

    @field_validator("steps")
    @classmethod
    def _steps_are_types(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        for after, following in value.items():
            _checked_type(after)
            if not following:
                raise ValueError(f"steps of {after!r} lists no following type")
            for t in following:
                _checked_type(t)
        return value

    @field_validator("compensations")
    @classmethod
    def _compensations_are_types(cls, value: dict[str, str]) -> dict[str, str]:
        for happened, required in value.items():
            _checked_type(happened)
            _checked_type(required)
            if happened == required:
                raise ValueError(f"{happened!r} cannot compensate itself")
        return value

    @field_validator("deadlines")
    @classmethod
    def _bounded_deadlines(cls, value: dict[str, timedelta]) -> dict[str, timedelta]:
        for after, deadline in value.items():
            _checked_type(after)
            if not timedelta(0) < deadline <= MAX_STEP_DEADLINE:
                raise ValueError(
                    f"the deadline of step {after!r} must be positive and at most "
                    f"{MAX_STEP_DEADLINE.days} days"
                )
        return value

    @field_validator("timeout")
    @classmethod
    def _positive_timeout(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be positive")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        ends = set(self.success) & set(self.failure)
        if ends:
            raise ValueError(f"{sorted(ends)} cannot be both a success and a failure end")
        if self.start in self.success or self.start in self.failure:
            raise ValueError(f"the start event {self.start!r} cannot also end the flow")
        unknown = sorted(set(self.deadlines) - set(self.steps))
        if unknown:
            raise ValueError(
                f"deadlines name {unknown}, which are not steps: give each a step "
                "(steps: {type: [next types]}) or remove its deadline"
            )
        return self

    @classmethod
    def declare(
        cls,
        name: str,
        *,
        start: EventRef,
        success: Iterable[EventRef],
        failure: Iterable[EventRef] = (),
        steps: Mapping[EventRef, Iterable[EventRef] | SagaStep] | None = None,
        compensations: Mapping[EventRef, EventRef] | None = None,
        timeout: timedelta = timedelta(seconds=60),
        description: str = "",
    ) -> SagaSpec:
        """Declare a spec with event classes (or type names).

        Example::

            ORDER_SAGA = SagaSpec.declare(
                "order",
                start=OrderPlaced,
                success=[OrderConfirmed],
                failure=[OrderCancelled],
                steps={
                    OrderPlaced: [StockReserved, StockRejected],
                    # a payment decision within 30 s of the reservation
                    StockReserved: SagaStep(
                        [PaymentAuthorized, PaymentDeclined], deadline=timedelta(seconds=30)
                    ),
                },
                compensations={StockReserved: StockReleased},
                timeout=timedelta(seconds=60),
            )

        Raises:
            ConfigurationError: The spec is inconsistent; the message says where.
        """
        given: dict[str, Any] = {_type_name(k): _step(v) for k, v in (steps or {}).items()}
        try:
            return cls(
                name=name,
                start=_type_name(start),
                success=tuple(_type_name(t) for t in success),
                failure=tuple(_type_name(t) for t in failure),
                steps=given,
                compensations={
                    _type_name(k): _type_name(v) for k, v in (compensations or {}).items()
                },
                timeout=timeout,
                description=description,
            )
        except ValidationError as exc:
            raise ConfigurationError(
                f"saga {name!r} is invalid: {describe_validation_error(exc)}"
            ) from None

    @property
    def types(self) -> frozenset[str]:
        """Every event type the spec mentions."""
        found = {self.start, *self.success, *self.failure}
        for after, following in self.steps.items():
            found.add(after)
            found.update(following)
        for happened, required in self.compensations.items():
            found.update((happened, required))
        return frozenset(found)

    def deadline_of(self, step: str) -> timedelta | None:
        """The deadline of the step after an event of type ``step``, if it has one."""
        return self.deadlines.get(step)

    def required_compensations(self, happened: Collection[str]) -> tuple[str, ...]:
        """The compensations a failure requires, given the types that ``happened``."""
        return tuple(
            dict.fromkeys(
                required for done, required in self.compensations.items() if done in happened
            )
        )


def _step(value: Iterable[EventRef] | SagaStep) -> tuple[str, ...] | SagaStep:
    if isinstance(value, SagaStep):
        return value
    return tuple(_type_name(t) for t in value)


def _checked_type(value: str) -> str:
    if not _TYPE.match(value):
        raise ValueError(f"{value!r} is not an event type (letters, digits, '.', '_', '-')")
    return value


def sagas_from_yaml(path: Path) -> tuple[SagaSpec, ...]:
    """Read saga specs from a YAML file.

    The file holds one spec, a list of specs, or ``{sagas: [...]}``; each spec
    has the fields of :class:`SagaSpec` with type names::

        sagas:
          - name: order
            start: order.placed
            success: [order.confirmed]
            failure: [order.cancelled]
            steps:
              order.placed: [stock.reserved, stock.rejected]
              stock.reserved:
                next: [payment.authorized, payment.declined]
                deadline: 30s
            compensations:
              stock.reserved: stock.released
            timeout: 60s

    Raises:
        ConfigurationError: The file is missing, not YAML, or a spec is invalid.
    """
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigurationError(f"cannot read saga specs from {path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{path} is not valid YAML: {exc}") from None
    items: Any = document
    if isinstance(document, dict) and "sagas" in document:
        items = document["sagas"]
    if isinstance(items, dict):
        items = [items]
    if not isinstance(items, list) or not items:
        raise ConfigurationError(f"{path}: expected a saga spec, a list of them, or 'sagas: [...]'")
    specs = []
    for index, item in enumerate(items):
        label = item.get("name", f"#{index + 1}") if isinstance(item, dict) else f"#{index + 1}"
        try:
            specs.append(SagaSpec.model_validate(item))
        except ValidationError as exc:
            raise ConfigurationError(
                f"{path}: saga {label!s} is invalid: {describe_validation_error(exc)}"
            ) from None
    return tuple(specs)


def sagas_from_entry_points(group: str = SAGAS_GROUP) -> tuple[SagaSpec, ...]:
    """Load the specs named by the ``choreokit.sagas`` entry points.

    Raises:
        ConfigurationError: An entry point cannot be imported or is not a spec.
    """
    specs: list[SagaSpec] = []
    for ep in sorted(entry_points(group=group), key=lambda e: e.name):
        try:
            value = ep.load()
        except Exception as exc:
            raise ConfigurationError(
                f"cannot load saga entry point {ep.name!r} ({ep.value}): {exc}"
            ) from exc
        found = [value] if isinstance(value, SagaSpec) else value
        if not isinstance(found, Sequence) or not all(isinstance(s, SagaSpec) for s in found):
            raise ConfigurationError(
                f"saga entry point {ep.name!r} ({ep.value}) must name a SagaSpec "
                "or a sequence of them"
            )
        specs.extend(found)
    return tuple(specs)
