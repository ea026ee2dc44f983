"""The import structure: no package reaches into another package's private modules.

The layers themselves (event layer -> tracing -> runtime -> apps -> CLI, the
example on top, no cycles) are import-linter contracts in pyproject.toml, which
``scripts/test`` checks with ``lint-imports``.
"""

from __future__ import annotations

import grimp
import pytest

pytestmark = pytest.mark.unit


def private_owner(module: str) -> str | None:
    """The package owning the first private (``_x``) part of ``module``, if it has one."""
    parts = module.split(".")
    for index, part in enumerate(parts):
        if part.startswith("_") and not part.startswith("__"):
            return ".".join(parts[:index])
    return None


def private_imports(graph: grimp.ImportGraph) -> list[str]:
    """Each import of a private module from outside the package that owns it."""
    offences: list[str] = []
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            owner = private_owner(imported)
            if owner is None or importer == owner or importer.startswith(owner + "."):
                continue
            offences.extend(
                f"{importer} (line {detail['line_number']}) imports {imported}"
                for detail in graph.get_import_details(importer=importer, imported=imported)
            )
    return offences


def test_no_module_imports_another_packages_private_modules() -> None:
    """What one package needs of another is public: in that package's ``__all__``."""
    assert private_imports(grimp.build_graph("choreokit")) == []


def test_the_check_sees_a_private_import_across_packages_and_allows_one_within() -> None:
    graph = grimp.ImportGraph()
    graph.add_import(
        importer="pkg.app.views",
        imported="pkg.lib._codec",
        line_number=3,
        line_contents="from pkg.lib._codec import decode",
    )
    graph.add_import(
        importer="pkg.lib.sql._outbox",
        imported="pkg.lib._codec",
        line_number=5,
        line_contents="from pkg.lib._codec import decode",
    )
    graph.add_import(
        importer="pkg.lib",
        imported="pkg.lib._codec",
        line_number=1,
        line_contents="from pkg.lib._codec import decode",
    )
    graph.add_import(
        importer="pkg.app.views",
        imported="pkg.lib.__about__",
        line_number=4,
        line_contents="from pkg.lib.__about__ import version",
    )
    assert private_imports(graph) == ["pkg.app.views (line 3) imports pkg.lib._codec"]
