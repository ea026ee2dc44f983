"""Session fixtures of the e2e tests: choreokit's wheel, installed once in a fresh venv."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.installed import Installed, build_wheel, install


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """choreokit's wheel, built from this checkout."""
    return build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="session")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """A fresh venv (outside the checkout) with the wheel and the tutorial's extras."""
    return install(wheel, tmp_path_factory.mktemp("user") / ".venv")
