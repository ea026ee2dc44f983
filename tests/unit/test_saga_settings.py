"""The observer's settings come from the environment once, typed and frozen."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

import choreokit.services.saga_observer
from choreokit.services.saga_observer import ObserverSettings


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CHOREO_OBSERVER_DB", "CHOREO_JAEGER_URL", "CHOREO_OBSERVER_PORT"):
        monkeypatch.delenv(name, raising=False)
    settings = ObserverSettings()
    assert settings.db is None
    assert (settings.host, settings.port) == ("127.0.0.1", 8080)
    assert settings.jaeger_url == "http://127.0.0.1:16686"
    assert settings.timeout is None
    assert settings.topic_pattern == r"^(?!__).+"


def test_the_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHOREO_OBSERVER_DB", "postgresql://observer@db/observer")
    monkeypatch.setenv("CHOREO_JAEGER_URL", "https://jaeger.example.com/")
    monkeypatch.setenv("CHOREO_OBSERVER_SPECS", "a.yaml, sagas/b.yaml")
    monkeypatch.setenv("CHOREO_OBSERVER_TIMEOUT", "2s")
    monkeypatch.setenv("CHOREO_OBSERVER_SWEEP_INTERVAL", "250ms")
    settings = ObserverSettings()
    assert settings.db == "postgresql://observer@db/observer"
    assert settings.jaeger_url == "https://jaeger.example.com"
    assert settings.specs == (Path("a.yaml"), Path("sagas/b.yaml"))
    assert settings.timeout == timedelta(seconds=2)
    assert settings.sweep_interval == timedelta(milliseconds=250)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CHOREO_OBSERVER_TOPIC_PATTERN", "orders("),
        ("CHOREO_OBSERVER_PORT", "70000"),
        ("CHOREO_OBSERVER_MAX_PAGE_SIZE", "10"),
        ("CHOREO_OBSERVER_TIMEOUT", "soon"),
    ],
)
def test_bad_values_are_refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        ObserverSettings()


def test_settings_are_frozen() -> None:
    settings = ObserverSettings()
    with pytest.raises(ValidationError):
        settings.port = 1  # type: ignore[misc]


def test_the_public_face_is_deliberate() -> None:
    assert sorted(choreokit.services.saga_observer.__all__) == [
        "Expectation",
        "FlowGraph",
        "Judgement",
        "Node",
        "ObserverSettings",
        "Reason",
        "Refusal",
        "SagaCatalog",
        "Status",
        "judge",
        "load_catalog",
    ]
    for name in choreokit.services.saga_observer.__all__:
        member = getattr(choreokit.services.saga_observer, name)
        if callable(member):
            assert member.__doc__, f"services.saga_observer.{name} has no docstring"
