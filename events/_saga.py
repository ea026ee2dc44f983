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


def _type_name(ref: EventRef) -> str:
    if isinstance(ref, str):
        return ref
    return ref.event_info().type


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
            *expected next step* comes from.
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
        return self

    @classmethod
    def declare(
        cls,
        name: str,
        *,
        start: EventRef,
        success: Iterable[EventRef],
        failure: Iterable[EventRef] = (),
        steps: Mapping[EventRef, Iterable[EventRef]] | None = None,
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
                steps={OrderPlaced: [StockReserved, StockRejected]},
                compensations={StockReserved: StockReleased},
                timeout=timedelta(seconds=60),
            )

        Raises:
            ConfigurationError: The spec is inconsistent; the message says where.
        """
        try:
            return cls(
                name=name,
                start=_type_name(start),
                success=tuple(_type_name(t) for t in success),
                failure=tuple(_type_name(t) for t in failure),
                steps={
                    _type_name(k): tuple(_type_name(t) for t in v) for k, v in (steps or {}).items()
                },
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

    def required_compensations(self, happened: Collection[str]) -> tuple[str, ...]:
        """The compensations a failure requires, given the types that ``happened``."""
        return tuple(
            dict.fromkeys(
                required for done, required in self.compensations.items() if done in happened
            )
        )


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
