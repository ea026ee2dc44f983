"""The transaction settings: off by default, on by ``CHOREO_KAFKA_TRANSACTIONS=on``, with
read_committed consumers, a stable per-instance transactional id, and clear refusals."""

from __future__ import annotations

import socket
from datetime import timedelta

import pytest
from pydantic import ValidationError

from choreokit.events import Idempotence, Isolation, KafkaSettings, Registry, Service
from choreokit.events._kafka import consumer_options, reader_options


def test_transactions_are_off_by_default_and_consumers_read_uncommitted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("CHOREO_KAFKA_TRANSACTIONS", "CHOREO_KAFKA_ISOLATION"):
        monkeypatch.delenv(name, raising=False)
    settings = KafkaSettings()
    assert settings.transactions is False
    assert settings.isolation_level() is Isolation.READ_UNCOMMITTED
    assert consumer_options(settings)["isolation_level"] == "read_uncommitted"


def test_transactions_on_from_the_environment_read_committed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CHOREO_KAFKA_TRANSACTIONS", "on")
    monkeypatch.setenv("CHOREO_KAFKA_TRANSACTIONAL_ID", "orders-0")
    monkeypatch.setenv("CHOREO_KAFKA_TRANSACTION_TIMEOUT", "20s")
    settings = KafkaSettings()
    assert settings.transactions is True
    assert settings.transactional_id == "orders-0"
    assert settings.transaction_timeout == timedelta(seconds=20)
    assert consumer_options(settings)["isolation_level"] == "read_committed"


def test_a_reader_without_transactions_may_read_committed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The observer or a downstream service of a transactional hop sets the isolation alone."""
    monkeypatch.setenv("CHOREO_KAFKA_ISOLATION", "read_committed")
    assert reader_options(KafkaSettings()) == {"isolation_level": "read_committed"}


def test_transactions_without_idempotence_are_refused() -> None:
    with pytest.raises(ValidationError, match="needs an idempotent producer"):
        KafkaSettings(transactions=True, idempotence=Idempotence.OFF)


@pytest.mark.parametrize("bad", ["", "has space", "x" * 201, "slash/ed"])
def test_a_malformed_transactional_id_is_refused(bad: str) -> None:
    with pytest.raises(ValidationError, match="TRANSACTIONAL_ID"):
        KafkaSettings(transactional_id=bad)


def test_the_default_transactional_id_is_the_service_and_the_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Stable across restarts on one host; configured when a host runs more instances."""
    monkeypatch.setattr(socket, "gethostname", lambda: "pod 3.example")
    service = Service("billing", registry=Registry(), settings=KafkaSettings(transactions=True))
    assert service.transactional_id() == "billing-pod-3.example"
    named = Service(
        "billing",
        registry=Registry(),
        settings=KafkaSettings(transactions=True, transactional_id="billing-7"),
    )
    assert named.transactional_id() == "billing-7"
