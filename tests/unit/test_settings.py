"""Settings come from the environment, once, with profile defaults for timings."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from choreokit.events import Idempotence, KafkaSettings, Profile
from choreokit.events._kafka import consumer_options, producer_options


def test_defaults_are_local_and_safe(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CHOREO_PROFILE", "CHOREO_KAFKA_BOOTSTRAP", "CHOREO_KAFKA_IDEMPOTENCE"):
        monkeypatch.delenv(name, raising=False)
    settings = KafkaSettings()
    assert settings.bootstrap == "127.0.0.1:9092"
    assert settings.profile is Profile.LOCAL
    assert settings.idempotence is Idempotence.AUTO
    options = consumer_options(settings)
    assert options["auto_offset_reset"] == "earliest"
    assert options["session_timeout_ms"] == 2000
    assert options["heartbeat_interval_ms"] == 500
    assert producer_options(settings, idempotent=False)["acks"] == "all"


def test_the_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHOREO_KAFKA_BOOTSTRAP", "kafka:9092")
    monkeypatch.setenv("CHOREO_PROFILE", "production")
    monkeypatch.setenv("CHOREO_KAFKA_IDEMPOTENCE", "on")
    monkeypatch.setenv("CHOREO_KAFKA_FETCH_MAX_WAIT", "250ms")
    monkeypatch.setenv("CHOREO_KAFKA_REQUEST_TIMEOUT", "1.5")
    monkeypatch.setenv("CHOREO_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("CHOREO_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("CHOREO_KAFKA_SASL_USERNAME", "orders")
    monkeypatch.setenv("CHOREO_KAFKA_SASL_PASSWORD", "s3cret")
    settings = KafkaSettings()
    assert settings.bootstrap == "kafka:9092"
    assert settings.profile is Profile.PRODUCTION
    assert settings.idempotence is Idempotence.ON
    assert settings.timing("fetch_max_wait") == timedelta(milliseconds=250)
    assert settings.timing("session_timeout") == timedelta(seconds=10)
    assert settings.request_timeout == timedelta(seconds=1.5)
    assert producer_options(settings, idempotent=True)["enable_idempotence"] is True


def test_bad_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHOREO_KAFKA_IDEMPOTENCE", "sometimes")
    with pytest.raises(ValidationError, match="idempotence"):
        KafkaSettings()


def test_settings_are_frozen() -> None:
    settings = KafkaSettings(bootstrap="x:1")
    with pytest.raises(ValidationError):
        settings.bootstrap = "y:2"  # type: ignore[misc]


def test_a_bootstrap_list_reaches_every_client_as_separate_hosts() -> None:
    """FastStream's broker would take a comma-separated string as one host: pass a list."""
    from choreokit.events._kafka import client_options

    settings = KafkaSettings(bootstrap="127.0.0.1:9092, 127.0.0.1:9093,127.0.0.1:9094")
    assert client_options(settings)["bootstrap_servers"] == [
        "127.0.0.1:9092",
        "127.0.0.1:9093",
        "127.0.0.1:9094",
    ]
