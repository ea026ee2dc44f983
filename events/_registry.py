"""The registry of event models, keyed by (type, major version), and their upcasters."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from choreokit.events._errors import (
    MissingUpcasterError,
    SchemaError,
    UnknownEventTypeError,
    UnknownEventVersionError,
    VersionTooNewError,
)
from choreokit.events._model import Event

_S = TypeVar("_S", bound=Event)
_T = TypeVar("_T", bound=Event)

Upcaster = Callable[[Any], Event]


@dataclass(slots=True)
class _TypeEntry:
    topic: str
    models: dict[int, type[Event]] = field(default_factory=dict)
    upcasters: dict[int, Upcaster] = field(default_factory=dict)


class Registry:
    """Maps (type, version) to its model and chains upcasters from version N to N+1.

    Event classes register themselves in :data:`default_registry` when they are
    declared; pass ``registry=`` in the class keywords to use another one (tests
    do this to keep their declarations apart).
    """

    def __init__(self) -> None:
        self._types: dict[str, _TypeEntry] = {}

    def register(self, model: type[Event]) -> None:
        """Add an event class.

        Raises:
            SchemaError: Another class already holds that (type, version), or a
                version of the type was declared on another topic.
        """
        info = model.event_info()
        entry = self._types.get(info.type)
        if entry is None:
            entry = self._types[info.type] = _TypeEntry(topic=info.topic)
        elif entry.topic != info.topic:
            raise SchemaError(
                f"{model.__qualname__} puts {info.type} on topic {info.topic!r}, but other "
                f"versions use {entry.topic!r}; every version of a type shares one topic"
            )
        existing = entry.models.get(info.version)
        if existing is not None and existing is not model:
            if _same_declaration(existing, model):
                # A module imported twice (e.g. as a script and as a module).
                entry.models[info.version] = model
                return
            raise SchemaError(
                f"{info} is declared twice: by {_qualname(existing)} and {_qualname(model)}"
            )
        entry.models[info.version] = model

    def upcaster(self, fn: Callable[[_S], _T]) -> Callable[[_S], _T]:
        """Register ``fn`` as the upcaster from its argument's version to the next.

        The source and target are read from the annotations, which must name two
        consecutive versions of the same type.
        """
        source, target = _upcaster_models(fn)
        self.add_upcaster(source, target, cast("Callable[[Event], Event]", fn))
        return fn

    def add_upcaster(self, source: type[_S], target: type[_T], fn: Callable[[_S], _T]) -> None:
        """Register ``fn`` as the upcaster from ``source`` to ``target`` (the next version).

        Raises:
            SchemaError: The models are not consecutive versions of one type in
                this registry.
        """
        src, dst = source.event_info(), target.event_info()
        if src.type != dst.type or dst.version != src.version + 1:
            raise SchemaError(
                f"upcaster {fn.__qualname__} must turn {src.type} vN into v(N+1), "
                f"not {src} into {dst}"
            )
        entry = self._entry(src.type)
        if entry.models.get(src.version) is not source or entry.models.get(dst.version) is not (
            target
        ):
            raise SchemaError(
                f"upcaster {fn.__qualname__} names models that are not in this registry"
            )
        entry.upcasters[src.version] = fn

    def model(self, event_type: str, version: int) -> type[Event]:
        """Return the model for ``event_type`` at ``version``.

        Raises:
            UnknownEventTypeError: The type is not registered.
            UnknownEventVersionError: The type is, but not at that version.
        """
        entry = self._entry(event_type)
        model = entry.models.get(version)
        if model is None:
            raise UnknownEventVersionError(event_type, version, list(entry.models))
        return model

    def knows(self, event_type: str) -> bool:
        """Return whether any version of ``event_type`` is registered."""
        return event_type in self._types

    def versions(self, event_type: str) -> tuple[int, ...]:
        """Return the registered versions of ``event_type``, oldest first."""
        return tuple(sorted(self._entry(event_type).models))

    def latest(self, event_type: str) -> type[Event]:
        """Return the model of the newest registered version of ``event_type``."""
        entry = self._entry(event_type)
        return entry.models[max(entry.models)]

    def topic(self, event_type: str) -> str:
        """Return the topic ``event_type`` is published to."""
        return self._entry(event_type).topic

    def types(self) -> tuple[str, ...]:
        """Return every registered type, sorted."""
        return tuple(sorted(self._types))

    def __iter__(self) -> Iterator[type[Event]]:
        """Iterate over every model, by type and then version."""
        for name in sorted(self._types):
            entry = self._types[name]
            for version in sorted(entry.models):
                yield entry.models[version]

    def __len__(self) -> int:
        return sum(len(entry.models) for entry in self._types.values())

    def check_upcast_path(self, event_type: str, to_version: int) -> None:
        """Verify that every older version of a type can be upcast to ``to_version``.

        Raises:
            MissingUpcasterError: A step of the chain is missing.
        """
        entry = self._entry(event_type)
        for version in sorted(v for v in entry.models if v < to_version):
            for step in range(version, to_version):
                if step not in entry.upcasters:
                    raise MissingUpcasterError(event_type, step, step + 1)

    def upcast(self, event: Event, to_version: int) -> Event:
        """Turn ``event`` into the model of ``to_version`` of its type.

        Raises:
            VersionTooNewError: The event is newer than ``to_version``.
            MissingUpcasterError: A step of the chain is missing.
        """
        info = event.event_info()
        if info.version == to_version:
            return event
        if info.version > to_version:
            raise VersionTooNewError(info.type, info.version, to_version)
        entry = self._entry(info.type)
        current = event
        for step in range(info.version, to_version):
            fn = entry.upcasters.get(step)
            if fn is None:
                raise MissingUpcasterError(info.type, step, step + 1)
            current = fn(current)
        return current

    def _entry(self, event_type: str) -> _TypeEntry:
        entry = self._types.get(event_type)
        if entry is None:
            raise UnknownEventTypeError(event_type, list(self._types))
        return entry


def _qualname(model: type[Event]) -> str:
    return f"{model.__module__}.{model.__qualname__}"


def _same_declaration(a: type[Event], b: type[Event]) -> bool:
    return _qualname(a) == _qualname(b) and a.model_json_schema() == b.model_json_schema()


def _upcaster_models(fn: Callable[..., Any]) -> tuple[type[Event], type[Event]]:
    try:
        hints = typing.get_type_hints(fn)
    except NameError as exc:
        raise SchemaError(
            f"upcaster {fn.__qualname__}: cannot resolve its annotations ({exc}); declare "
            "the models at module level, or use Registry.add_upcaster(source, target, fn)"
        ) from None
    params = [p for p in inspect.signature(fn).parameters.values() if p.name in hints]
    source = hints.get(params[0].name) if params else None
    target = hints.get("return")
    if not (_is_event_class(source) and _is_event_class(target)):
        raise SchemaError(
            f"upcaster {fn.__qualname__} must be annotated: (event: OldModel) -> NewModel"
        )
    assert isinstance(source, type)
    assert isinstance(target, type)
    return source, target


def _is_event_class(obj: object) -> bool:
    return isinstance(obj, type) and issubclass(obj, Event) and "__event__" in obj.__dict__


default_registry = Registry()
"""The registry event classes join unless they name another one."""
Event.__default_registry__ = default_registry


def upcaster(fn: Callable[[_S], _T]) -> Callable[[_S], _T]:
    """Register an upcaster in the registry of the model it takes.

    Example::

        @upcaster
        def _v1_to_v2(old: OrderPlacedV1) -> OrderPlacedV2:
            return OrderPlacedV2(order_id=old.order_id, lines=[Line(sku=old.sku, qty=old.qty)])
    """
    source, _ = _upcaster_models(fn)
    registry = source.__event_registry__
    assert isinstance(registry, Registry)
    return registry.upcaster(fn)
