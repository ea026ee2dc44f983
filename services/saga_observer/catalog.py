"""The specs an observer judges by: a catalog looked up by name or by a flow's events.

The specs themselves are the event layer's (:class:`choreokit.events.SagaSpec`);
the catalog gathers them from the ``choreokit.sagas`` entry points and YAML files.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Iterator
from datetime import timedelta
from pathlib import Path

from choreokit.events import (
    SAGAS_GROUP,
    ConfigurationError,
    SagaSpec,
    sagas_from_yaml,
)
from choreokit.services.runtime.discovery import declared_sagas

logger = logging.getLogger("choreokit.observer")


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
    by_name = {spec.name: spec for spec in declared_sagas(group)}
    for path in yaml_paths:
        for spec in sagas_from_yaml(path):
            if spec.name in by_name:
                logger.info("saga %r from %s replaces the declared one", spec.name, path)
            by_name[spec.name] = spec
    return SagaCatalog(by_name.values()).with_timeout(timeout)
