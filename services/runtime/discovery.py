"""What a project declares: its event modules, services and sagas, and when the example joins.

A project declares them in one or both of two ways, read the same by every
``choreo`` command:

* entry points of an installed distribution (the project's own, once it is
  packaged), in the groups ``choreokit.events`` (``name = "module"``),
  ``choreokit.services`` (``name = "module:factory"``) and ``choreokit.sagas``
  (``name = "module:attribute"``);
* a ``[tool.choreokit]`` table in the ``pyproject.toml`` of the working
  directory (or the nearest one above it), with the same three keys; its
  directory is put on ``sys.path``, so an unpackaged project needs no
  ``PYTHONPATH``::

      [tool.choreokit]
      events = ["shop.events"]
      sagas = ["shop.sagas:CHECKOUT"]

      [tool.choreokit.services]
      notifications = "shop.notifications:create"

choreokit's own distribution registers only its toolkit apps (the saga
observer and the gateway). The example domain (``choreokit.services.example``)
is declared by nobody: it joins when ``$CHOREO_EXAMPLE`` is ``1``, which
``choreo dev`` and ``choreo demo`` set when they run it.
"""

from __future__ import annotations

import importlib
import os
import sys
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any

from choreokit.events import ConfigurationError, SagaSpec, sagas_from_entry_points

EVENTS_GROUP = "choreokit.events"
SERVICES_GROUP = "choreokit.services"
SAGAS_GROUP = "choreokit.sagas"
MODULES_ENV = "CHOREO_EVENT_MODULES"
EXAMPLE_ENV = "CHOREO_EXAMPLE"
OWN_DISTRIBUTION = "choreokit"
TOOL_TABLE = "tool.choreokit"

_EXAMPLE = "choreokit.services.example"
_OBSERVER_EVENTS = "choreokit.services.saga_observer.events"
_ORCHESTRATION_EVENTS = "choreokit.events.orchestration.events"
_APPROVAL_EVENTS = "choreokit.events._approvals"  # the event layer's approval.* types


@dataclass(frozen=True)
class Declarations:
    """Event modules, services (name to ``module:factory``) and sagas (name to ``module:attr``).

    Attributes:
        events: Modules that declare events, by name.
        services: Service factories, by service name.
        sagas: Saga specs (or sequences of them), by name.
    """

    events: Mapping[str, str] = field(default_factory=dict)
    services: Mapping[str, str] = field(default_factory=dict)
    sagas: Mapping[str, str] = field(default_factory=dict)

    def __or__(self, other: Declarations) -> Declarations:
        return Declarations(
            events={**self.events, **other.events},
            services={**self.services, **other.services},
            sagas={**self.sagas, **other.sagas},
        )

    def __bool__(self) -> bool:
        return bool(self.events or self.services or self.sagas)


EXAMPLE = Declarations(
    events={
        "example": f"{_EXAMPLE}.contracts",
        "saga-observer": _OBSERVER_EVENTS,
        # shipping's orchestration reports its runs (orchestration.run)
        "orchestration": _ORCHESTRATION_EVENTS,
        "approvals": _APPROVAL_EVENTS,
    },
    services={
        name: f"{_EXAMPLE}.{name}.app:create"
        for name in ("orders", "inventory", "payments", "shipping")
    },
    sagas={"order": f"{_EXAMPLE}.contracts.saga:ORDER_SAGA"},
)
"""The example domain: its contracts (with the observer's lifecycle events and the approval
events of its checkpoint), services, saga."""


def example_enabled() -> bool:
    """Whether the example domain is in play (``$CHOREO_EXAMPLE`` is ``1``)."""
    return os.environ.get(EXAMPLE_ENV, "").strip().lower() in {"1", "true", "yes"}


def find_pyproject(start: Path | None = None) -> Path | None:
    """The ``pyproject.toml`` of ``start`` (the working directory) or the nearest one above."""
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        candidate = directory / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def _entry(table: Mapping[str, Any], key: str, source: str) -> dict[str, str]:
    value = table.get(key, {})
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return {v: v for v in value}
    if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
        return {str(k): v for k, v in value.items()}
    raise ConfigurationError(
        f"{source}: [{TOOL_TABLE}] {key} must be a list of strings or a table of "
        f'name = "value" (see docs/services.md)'
    )


@cache
def _tool_table(path: Path) -> tuple[Declarations, Path] | None:
    try:
        document = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"cannot read {path}: {exc}") from exc
    table = document.get("tool", {}).get("choreokit")
    if table is None:
        return None
    if not isinstance(table, dict):
        raise ConfigurationError(f"{path}: [{TOOL_TABLE}] must be a table")
    unknown = sorted(set(table) - {"events", "services", "sagas"})
    if unknown:
        raise ConfigurationError(
            f"{path}: [{TOOL_TABLE}] has unknown keys {', '.join(unknown)} "
            "(known: events, services, sagas)"
        )
    services = _entry(table, "services", str(path))
    for name, target in services.items():
        if ":" not in target:
            raise ConfigurationError(
                f'{path}: service {name!r} must be "module:factory", not {target!r}'
            )
    declared = Declarations(
        events=_entry(table, "events", str(path)),
        services=services,
        sagas=_entry(table, "sagas", str(path)),
    )
    return declared, path.parent


def project_root() -> Path | None:
    """The directory of the nearest ``pyproject.toml`` if it has a ``[tool.choreokit]`` table."""
    path = find_pyproject()
    found = _tool_table(path) if path is not None else None
    return found[1] if found else None


def project() -> Declarations:
    """The project's own declarations: other distributions' entry points and ``[tool.choreokit]``.

    Raises:
        ConfigurationError: The ``[tool.choreokit]`` table is malformed.
    """
    groups = {}
    for group in (EVENTS_GROUP, SERVICES_GROUP, SAGAS_GROUP):
        groups[group] = {
            ep.name: ep.value
            for ep in entry_points(group=group)
            if ep.dist is None or ep.dist.name.lower() != OWN_DISTRIBUTION
        }
    declared = Declarations(
        events=groups[EVENTS_GROUP], services=groups[SERVICES_GROUP], sagas=groups[SAGAS_GROUP]
    )
    path = find_pyproject()
    found = _tool_table(path) if path is not None else None
    return declared | found[0] if found else declared


def toolkit() -> Declarations:
    """Choreokit's own apps (saga observer, gateway), from its distribution's entry points."""
    groups = {}
    for group in (EVENTS_GROUP, SERVICES_GROUP, SAGAS_GROUP):
        groups[group] = {
            ep.name: ep.value
            for ep in entry_points(group=group)
            if ep.dist is not None and ep.dist.name.lower() == OWN_DISTRIBUTION
        }
    return Declarations(
        events=groups[EVENTS_GROUP], services=groups[SERVICES_GROUP], sagas=groups[SAGAS_GROUP]
    )


def in_effect() -> Declarations:
    """Everything the commands see: the toolkit's apps, the project's, and the example if on."""
    declared = toolkit() | project()
    return declared | EXAMPLE if example_enabled() else declared


def import_module(name: str) -> ModuleType:
    """Import a module a project names, with the project's directory on ``sys.path``.

    The directory is that of the ``pyproject.toml`` with ``[tool.choreokit]``, else
    the working directory (as ``python -m`` and ``uvicorn`` do); choreokit itself is
    already imported, so no folder there can shadow it.
    """
    root = project_root() or Path.cwd()
    entry = str(root)
    if entry not in sys.path:
        sys.path.insert(0, entry)
    return importlib.import_module(name)


def load_object(target: str, what: str) -> object:
    """Import ``module:attribute`` (or a module) named by a declaration; return the object.

    Raises:
        ConfigurationError: The module cannot be imported or has no such attribute.
    """
    module_name, _, attribute = target.partition(":")
    try:
        module = import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(f"cannot import {what} {target!r}: {exc}") from exc
    if not attribute:
        return module
    value = getattr(module, attribute, None)
    if value is None:
        raise ConfigurationError(f"{what} {target!r}: {module_name} has no {attribute!r}")
    return value


def env_modules() -> tuple[str, ...]:
    """The modules named in ``$CHOREO_EVENT_MODULES`` (comma-separated)."""
    return tuple(m.strip() for m in os.environ.get(MODULES_ENV, "").split(",") if m.strip())


def load_event_modules(extra: Iterable[str] = ()) -> tuple[str, ...]:
    """Import every module that declares events, so their classes join the registry.

    Modules come from the declarations in effect (:func:`in_effect`), the
    comma-separated ``$CHOREO_EVENT_MODULES``, and ``extra``. A toolkit app's
    events whose extra is not installed are left out.

    Returns:
        The names of the modules imported.

    Raises:
        ConfigurationError: A module could not be imported.
    """
    from choreokit.events.extras import MissingExtraError

    own = toolkit().events.values()
    names = [*in_effect().events.values(), *env_modules(), *extra]
    loaded: list[str] = []
    for name in dict.fromkeys(names):
        try:
            import_module(name)
        except MissingExtraError as exc:
            if name in own:
                continue
            raise ConfigurationError(f"cannot import event module {name!r}: {exc}") from exc
        except ImportError as exc:
            raise ConfigurationError(
                f"cannot import event module {name!r} ({exc}); check {MODULES_ENV}, "
                f"[{TOOL_TABLE}] events in pyproject.toml and the {EVENTS_GROUP!r} entry points"
            ) from exc
        loaded.append(name)
    return tuple(loaded)


def declared_sagas(group: str = SAGAS_GROUP) -> tuple[SagaSpec, ...]:
    """The saga specs in effect: entry points, ``[tool.choreokit] sagas``, the example's if on.

    With another ``group`` only that entry-point group is read (tests, tools).

    Raises:
        ConfigurationError: A declaration cannot be imported or is not a spec.
    """
    if group != SAGAS_GROUP:
        return sagas_from_entry_points(group)
    specs: list[SagaSpec] = []
    for name, target in sorted(in_effect().sagas.items()):
        try:
            value = load_object(target, "saga")
        except ConfigurationError:
            raise
        except Exception as exc:
            raise ConfigurationError(f"cannot load saga {name!r} ({target}): {exc}") from exc
        found = [value] if isinstance(value, SagaSpec) else value
        if not isinstance(found, Sequence) or not all(isinstance(s, SagaSpec) for s in found):
            raise ConfigurationError(
                f"saga {name!r} ({target}) must name a SagaSpec or a sequence of them"
            )
        specs.extend(found)
    return tuple(specs)
