"""Fixtures of every layer; the embedded broker starts once per session, on a free port."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from events import KafkaSettings
from services.runtime import EmbeddedBroker, free_port

TESTS = Path(__file__).parent
LAYERS = ("unit", "integration", "e2e")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with its layer, from the folder it lives in."""
    for item in items:
        relative = Path(str(item.fspath)).resolve().relative_to(TESTS.resolve())
        if relative.parts and relative.parts[0] in LAYERS:
            item.add_marker(getattr(pytest.mark, relative.parts[0]))


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """The real embedded broker (Tansu), shared by the session; tests use their own topics."""
    log = tmp_path_factory.mktemp("broker") / "tansu.log"
    embedded = EmbeddedBroker(port=free_port(), log=log)
    embedded.start()
    yield embedded
    embedded.stop()


@pytest.fixture
def kafka(broker: EmbeddedBroker) -> KafkaSettings:
    """Settings pointing at the session's broker, with the local profile."""
    return KafkaSettings(bootstrap=broker.bootstrap)
