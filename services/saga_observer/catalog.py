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
        self._known = self._types_by_name()

    def _types_by_name(self) -> tuple[tuple[SagaSpec, frozenset[str]], ...]:
        # Each spec's types once, not on every flow judged before its start arrived.
        return tuple((spec, spec.types) for spec in self)

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
        for spec, known in self._known:
            if not known.isdisjoint(types):
                return spec
        return None

    def update(self, other: SagaCatalog) -> frozenset[str]:
        """Take ``other``'s specs in place, so everything holding this catalog judges by them.

        Returns:
            The names of the specs added, removed or changed.
        """
        before = self._by_name
        self._by_name, self._by_start = dict(other._by_name), dict(other._by_start)
        self._known = other._known
        names = set(before) | set(self._by_name)
        return frozenset(n for n in names if before.get(n) != self._by_name.get(n))

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


class SpecFiles:
    """The YAML spec files of a catalog, reloaded into it when one changes on disk.

    :meth:`reload_if_changed` compares each file's modification time and size
    with the last look (the observer calls it on every sweep); on a change the
    catalog is rebuilt as at start (entry points, then the files) and updated in
    place. A file that no longer reads, or specs that no longer agree, are
    logged and leave the catalog as it was.

    Args:
        catalog: The catalog to update (the one the store, API and queries hold).
        paths: The YAML files.
        timeout: The timeout override, applied to reloaded specs too.
        group: The entry-point group.
    """

    def __init__(
        self,
        catalog: SagaCatalog,
        paths: Iterable[Path],
        *,
        timeout: timedelta | None = None,
        group: str = SAGAS_GROUP,
    ) -> None:
        self._catalog = catalog
        self._paths = tuple(paths)
        self._timeout = timeout
        self._group = group
        self._stamps = self._stat()

    def _stat(self) -> tuple[tuple[int, int] | None, ...]:
        stamps: list[tuple[int, int] | None] = []
        for path in self._paths:
            try:
                found = path.stat()
            except OSError:
                stamps.append(None)
            else:
                stamps.append((found.st_mtime_ns, found.st_size))
        return tuple(stamps)

    def reload_if_changed(self) -> frozenset[str]:
        """Reload the specs if a file changed; return the names of the specs that changed."""
        stamps = self._stat()
        if stamps == self._stamps:
            return frozenset()
        self._stamps = stamps
        try:
            fresh = load_catalog(self._paths, timeout=self._timeout, group=self._group)
        except ConfigurationError as exc:
            refused: ConfigurationError | None = exc
        else:
            refused = None
        if refused is not None:
            logger.error("saga specs not reloaded (%s); judging by the previous ones", refused)
            return frozenset()
        changed = self._catalog.update(fresh)
        if changed:
            logger.info("saga specs reloaded; changed: %s", ", ".join(sorted(changed)))
        return changed
