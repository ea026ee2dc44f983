"""Finding event declarations and services: entry points, plus modules named in the environment."""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable
from importlib.metadata import entry_points

from choreokit.events import ConfigurationError

EVENTS_GROUP = "choreokit.events"
MODULES_ENV = "CHOREO_EVENT_MODULES"


def load_event_modules(extra: Iterable[str] = ()) -> tuple[str, ...]:
    """Import every module that declares events, so their classes join the registry.

    Modules come from the ``choreokit.events`` entry points of installed
    distributions, the comma-separated ``$CHOREO_EVENT_MODULES``, and ``extra``.

    Returns:
        The names of the modules imported.

    Raises:
        ConfigurationError: A module could not be imported.
    """
    names = [ep.value for ep in entry_points(group=EVENTS_GROUP)]
    names += [m.strip() for m in os.environ.get(MODULES_ENV, "").split(",") if m.strip()]
    names += list(extra)
    loaded: list[str] = []
    for name in dict.fromkeys(names):
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ConfigurationError(
                f"cannot import event module {name!r} ({exc}); check {MODULES_ENV} "
                f"and the {EVENTS_GROUP!r} entry points"
            ) from exc
        loaded.append(name)
    return tuple(loaded)
