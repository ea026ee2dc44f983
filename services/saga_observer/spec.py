"""Saga specs: what a flow of one kind must do to count as completed, failed or compensated.

A spec names event *types* (strings). In Python it is declared next to the
events with the event classes themselves (:meth:`SagaSpec.declare`) and
published through the ``choreokit.sagas`` entry point; teams that prefer YAML
list the same fields in a file (:func:`load_yaml`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from datetime import timedelta
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from choreokit.events import ConfigurationError, Event
from choreokit.events._codec import describe
from choreokit.events._settings import Duration

SAGAS_GROUP = "choreokit.sagas"
"""Entry-point group whose entries name a :class:`SagaSpec` (or a sequence of them)."""

EventRef = str | type[Event]
"""An event type: its name (``"order.placed"``) or an event class."""

_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
logger = logging.getLogger("choreokit.observer")


def type_name(ref: EventRef) -> str:
    """Return the event type ``ref`` stands for."""
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
                start=type_name(start),
                success=tuple(type_name(t) for t in success),
                failure=tuple(type_name(t) for t in failure),
                steps={
                    type_name(k): tuple(type_name(t) for t in v) for k, v in (steps or {}).items()
                },
                compensations={
                    type_name(k): type_name(v) for k, v in (compensations or {}).items()
                },
                timeout=timeout,
                description=description,
            )
        except ValidationError as exc:
            raise ConfigurationError(f"saga {name!r} is invalid: {describe(exc)}") from None

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


class SagaCatalog:
    """The specs an observer judges by, looked up by name or by a flow's events.

    Raises:
        ConfigurationError: Two specs share a name or a start type.
    """

    def __init__(self, specs: Iterable[SagaSpec] = ()) -> None:
        self._by_name: dict[str, SagaSpec] = {}
        self._by_start: dict[str, SagaSpec] = {}
        for spec in specs:
            if spec.name in self._by_name:
                raise ConfigurationError(f"two sagas are named {spec.name!r}; rename one")
            other = self._by_start.get(spec.start)
            if other is not None:
                raise ConfigurationError(
                    f"sagas {other.name!r} and {spec.name!r} both start with {spec.start!r}; "
                    "a flow must belong to one saga"
                )
            self._by_name[spec.name] = spec
            self._by_start[spec.start] = spec

    def __iter__(self) -> Iterator[SagaSpec]:
        return iter(sorted(self._by_name.values(), key=lambda s: s.name))

    def __len__(self) -> int:
        return len(self._by_name)

    def get(self, name: str) -> SagaSpec | None:
        """Return the spec named ``name``, if any."""
        return self._by_name.get(name)

    def for_flow(self, root_type: str | None, types: Collection[str]) -> SagaSpec | None:
        """Return the spec of a flow: the one its root starts, else the first that knows a type.

        A flow whose start event has not arrived yet is still matched by its
        other events; a flow no spec knows is ``None`` (recorded, not judged).
        """
        if root_type is not None and root_type in self._by_start:
            return self._by_start[root_type]
        for spec in self:
            if not spec.types.isdisjoint(types):
                return spec
        return None

    def with_timeout(self, timeout: timedelta | None) -> SagaCatalog:
        """Return the catalog with every timeout replaced by ``timeout`` (if given)."""
        if timeout is None:
            return self
        return SagaCatalog(spec.model_copy(update={"timeout": timeout}) for spec in self)


def load_yaml(path: Path) -> tuple[SagaSpec, ...]:
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
                f"{path}: saga {label!s} is invalid: {describe(exc)}"
            ) from None
    return tuple(specs)


def load_entry_points(group: str = SAGAS_GROUP) -> tuple[SagaSpec, ...]:
    """Load the declared specs: the ``choreokit.sagas`` entry points and ``[tool.choreokit]``.

    With the default group, the project's declarations are read as every
    command reads them (``choreokit.services.runtime.discovery``: entry points,
    ``[tool.choreokit] sagas``, and the example's saga when it is on); another
    group reads that entry-point group only.

    Raises:
        ConfigurationError: A declaration cannot be imported or is not a spec.
    """
    from choreokit.services.runtime import discovery

    if group == SAGAS_GROUP:
        declared = sorted(discovery.in_effect().sagas.items())
    else:
        declared = sorted((ep.name, ep.value) for ep in entry_points(group=group))
    specs: list[SagaSpec] = []
    for name, target in declared:
        try:
            value = discovery.load_object(target, "saga")
        except Exception as exc:
            raise ConfigurationError(f"cannot load saga {name!r} ({target}): {exc}") from exc
        found = [value] if isinstance(value, SagaSpec) else value
        if not isinstance(found, Sequence) or not all(isinstance(s, SagaSpec) for s in found):
            raise ConfigurationError(
                f"saga {name!r} ({target}) must name a SagaSpec or a sequence of them"
            )
        specs.extend(found)
    return tuple(specs)


def load_catalog(
    yaml_paths: Iterable[Path] = (),
    *,
    timeout: timedelta | None = None,
    group: str = SAGAS_GROUP,
) -> SagaCatalog:
    """Build the catalog from the entry points, then the YAML files (which win on name).

    Args:
        yaml_paths: YAML files of specs.
        timeout: Overrides every spec's timeout when given.
        group: The entry-point group to read.
    """
    by_name = {spec.name: spec for spec in load_entry_points(group)}
    for path in yaml_paths:
        for spec in load_yaml(path):
            if spec.name in by_name:
                logger.info("saga %r from %s replaces the declared one", spec.name, path)
            by_name[spec.name] = spec
    return SagaCatalog(by_name.values()).with_timeout(timeout)
