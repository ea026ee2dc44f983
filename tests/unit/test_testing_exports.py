"""choreokit.testing's public face: exactly what __all__ says, each name documented."""

from __future__ import annotations

import choreokit.testing
from choreokit.testing import pytest_plugin


def test_testing_exports_every_public_name_and_nothing_else() -> None:
    exported = sorted(choreokit.testing.__all__, key=str.casefold)
    public = sorted(
        (m for m in vars(choreokit.testing) if not m.startswith("_") and m != "pytest_plugin"),
        key=str.casefold,
    )
    assert exported == public
    assert "ServiceKit" in exported


def test_every_exported_name_and_plugin_fixture_has_a_docstring() -> None:
    for name in choreokit.testing.__all__:
        assert getattr(choreokit.testing, name).__doc__, name
    for fixture in ("choreo_spans", "choreo_broker", "choreo_kafka"):
        assert getattr(pytest_plugin, fixture).__doc__, fixture


def test_the_plugin_is_registered_by_the_installed_distribution() -> None:
    from importlib.metadata import entry_points

    plugins = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert plugins.get("choreokit") == "choreokit.testing.pytest_plugin"
