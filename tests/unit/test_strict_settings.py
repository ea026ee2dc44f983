"""Every settings class owns its prefix: a variable of it that names no setting stops the start.

One mechanism (:class:`~choreokit.events.StrictSettings`) serves the toolkit's and the
example's settings. Variables of a prefix that something else reads (a command-line option,
a client in the docs) are listed by the class as known elsewhere, so that ``choreo dev``
can still hand one environment to every process; a scan of the tree pins that every such
variable named anywhere is known to the class of its prefix.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from pydantic import AliasChoices, Field
from pydantic_settings import SettingsConfigDict

from choreokit.events import (
    ConfigurationError,
    KafkaSettings,
    StrictSettings,
    UnknownSettingError,
)
from choreokit.services.example.inventory.settings import InventorySettings
from choreokit.services.example.orders.settings import OrdersSettings
from choreokit.services.example.payments.settings import PaymentsSettings
from choreokit.services.example.shipping.settings import ShippingSettings
from choreokit.services.gateway import GatewaySettings
from choreokit.services.runtime.status import StatusSettings
from choreokit.services.saga_observer.settings import ObserverSettings
from choreokit.tracing._logs import LogSettings

ROOT = Path(__file__).resolve().parents[2]

CLASSES: list[type[StrictSettings]] = [
    KafkaSettings,
    LogSettings,
    StatusSettings,
    ObserverSettings,
    GatewaySettings,
    InventorySettings,
    OrdersSettings,
    PaymentsSettings,
    ShippingSettings,
]

TYPOS = {
    KafkaSettings: ("CHOREO_KAFKA_BOOTSTRAPS", "CHOREO_KAFKA_BOOTSTRAP"),
    LogSettings: ("CHOREO_LOG_FROMAT", "CHOREO_LOG_FORMAT"),
    StatusSettings: ("CHOREO_METRICS_PROT", "CHOREO_METRICS_PORT"),
    ObserverSettings: ("CHOREO_OBSERVER_TOKNES_FILE", "CHOREO_OBSERVER_TOKENS_FILE"),
    GatewaySettings: ("CHOREO_GATEWAY_MAX_BODY_SIZE", "CHOREO_GATEWAY_MAX_BODY"),
    InventorySettings: ("CHOREO_INVENTORY_CATALOGUE", "CHOREO_INVENTORY_CATALOG"),
    OrdersSettings: ("CHOREO_ORDERS_TOKN", "CHOREO_ORDERS_TOKEN"),
    PaymentsSettings: ("CHOREO_PAYMENTS_CREDIT_LIMIT", "CHOREO_PAYMENTS_CREDIT_LIMIT_CENTS"),
    ShippingSettings: ("CHOREO_SHIPPING_CARRIER_FAILURES", "CHOREO_SHIPPING_CARRIER_FAILURE_RATE"),
}
"""A misspelt variable of each class, and the hint it must get."""

ELSEWHERE = {
    KafkaSettings: {"CHOREO_KAFKA_HOME", "CHOREO_KAFKA_POM"},  # choreo broker --engine kafka
    LogSettings: {"CHOREO_LOG_LEVEL"},  # choreo --log-level
    ObserverSettings: {"CHOREO_OBSERVER_TOKEN"},  # choreo demo --observer-token
    GatewaySettings: {"CHOREO_GATEWAY_URL", "CHOREO_GATEWAY_KEY"},  # the clients in the docs
    OrdersSettings: {"CHOREO_ORDERS_APPROVAL_ABOVE_CENTS"},  # the order policy, read by payments
}

DELIBERATE_TYPOS = {
    "CHOREO_KAFKA_SSL_CA_FILE",
    "CHOREO_OBSERVER_OIDC_ROLES_CLAIM",
    "CHOREO_OBSERVER_TOKNES_FILE",
}
"""Misspelt names that tests and docs write on purpose, to show them refused."""


def prefix_of(settings: type[StrictSettings]) -> str:
    return str(settings.model_config["env_prefix"])


@pytest.fixture
def clean(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No variable of any class's prefix from the calling environment."""
    prefixes = tuple(prefix_of(c) for c in CLASSES)
    for name in list(os.environ):
        if name.upper().startswith(prefixes):
            monkeypatch.delenv(name)
    return monkeypatch


@pytest.mark.parametrize("settings", CLASSES, ids=lambda c: c.__name__)
def test_an_unknown_variable_is_refused_with_the_closest_name_and_the_known_ones(
    settings: type[StrictSettings], clean: pytest.MonkeyPatch
) -> None:
    typo, meant = TYPOS[settings]
    clean.setenv(typo, "1")
    with pytest.raises(UnknownSettingError) as refused:
        settings()
    message = str(refused.value)
    assert f"unknown variable {typo} (did you mean {meant}?)" in message
    assert f"the {prefix_of(settings)}* variables are " in message
    assert meant in refused.value.known
    assert refused.value.unknown == (typo,)
    assert all(name.startswith(prefix_of(settings)) for name in refused.value.known)
    assert isinstance(refused.value, ConfigurationError)
    assert isinstance(refused.value, ValueError)


@pytest.mark.parametrize("settings", CLASSES, ids=lambda c: c.__name__)
def test_variables_read_elsewhere_and_the_fields_own_are_accepted(
    settings: type[StrictSettings], clean: pytest.MonkeyPatch
) -> None:
    assert settings.known_elsewhere == ELSEWHERE.get(settings, set())
    for name in settings.known_elsewhere:
        clean.setenv(name, "something read by another program")
    settings()  # no error: other programs' variables of the prefix are left alone
    assert settings.known_elsewhere <= settings.known_variables()


def test_the_runtime_status_port_refuses_a_typo_rather_than_blaming_the_port(
    clean: pytest.MonkeyPatch,
) -> None:
    clean.setenv("CHOREO_METRICS_PORT", "off")
    clean.setenv("CHOREO_METRICS_HOTS", "0.0.0.0")
    with pytest.raises(UnknownSettingError, match=r"did you mean CHOREO_METRICS_HOST\?"):
        StatusSettings.from_env()


def test_an_openid_connect_typo_is_refused_once_by_the_observers_prefix(
    clean: pytest.MonkeyPatch,
) -> None:
    """``CHOREO_OBSERVER_OIDC_*`` lies inside ``CHOREO_OBSERVER_*``: one check, one message."""
    clean.setenv("CHOREO_OBSERVER_OIDC_ROLES_CLAIM", "groups")
    clean.setenv("choreo_observer_tokns_file", "/etc/tokens.yaml")  # read regardless of case
    with pytest.raises(UnknownSettingError) as refused:
        ObserverSettings()
    assert refused.value.unknown == (
        "CHOREO_OBSERVER_OIDC_ROLES_CLAIM",
        "choreo_observer_tokns_file",
    )
    message = str(refused.value)
    assert message.startswith("unknown variables CHOREO_OBSERVER_OIDC_ROLES_CLAIM (did you mean ")
    assert "CHOREO_OBSERVER_OIDC_ROLE_CLAIM?)" in message
    assert "choreo_observer_tokns_file (did you mean CHOREO_OBSERVER_TOKENS_FILE?)" in message
    assert message.count("CHOREO_OBSERVER_OIDC_ROLES_CLAIM") == 1


def test_a_variable_of_another_prefix_is_left_to_its_own_class(clean: pytest.MonkeyPatch) -> None:
    clean.setenv("CHOREO_OBSERVERS_PORT", "1")  # not CHOREO_OBSERVER_*: nobody's
    clean.setenv("CHOREO_GATEWAY_PROT", "1")  # the gateway's typo, not the observer's concern
    assert ObserverSettings().port == 8080


def test_no_prefix_lies_inside_another_so_each_variable_has_one_judge() -> None:
    prefixes = [prefix_of(c) for c in CLASSES]
    assert len(set(prefixes)) == len(prefixes)
    for one in prefixes:
        assert not [other for other in prefixes if other != one and other.startswith(one)]


def _tree_files() -> list[Path]:
    roots = ["events", "tracing", "services", "tests", "scripts", "deploy", "docs", "bench"]
    files = [ROOT / "docker-compose.yml", ROOT / "Dockerfile", ROOT / "README.md"]
    for root in roots:
        for folder, dirs, names in os.walk(ROOT / root):
            dirs[:] = [d for d in dirs if d not in {"node_modules", "__pycache__", "target"}]
            files += [Path(folder, n) for n in names if not n.endswith((".pyc", ".png", ".jar"))]
    return [f for f in files if f != Path(__file__)]


def test_every_settings_prefix_in_the_tree_belongs_to_a_strict_class() -> None:
    """A new ``CHOREO_*`` settings class that is not strict fails here."""
    declared = set()
    for path in _tree_files():
        if path.suffix == ".py":
            declared |= set(re.findall(r'env_prefix="(CHOREO_\w+)"', path.read_text()))
    assert declared == {prefix_of(c) for c in CLASSES}
    assert all(issubclass(c, StrictSettings) for c in CLASSES)


def test_every_variable_named_in_the_tree_is_known_to_the_class_of_its_prefix() -> None:
    """Code, compose, scripts, docs and test rigs name no variable a service would refuse:
    one read outside a settings class is listed as known elsewhere (``choreo dev`` hands one
    environment to every process)."""
    by_prefix = {prefix_of(c): c.known_variables() for c in CLASSES}
    refused: dict[str, set[str]] = {}
    for path in _tree_files():
        try:
            text = path.read_text()
        except (UnicodeDecodeError, OSError):
            continue
        for name in set(re.findall(r"\bCHOREO_[A-Z0-9_]*[A-Z0-9]\b", text)) - DELIBERATE_TYPOS:
            for prefix, known in by_prefix.items():
                if name.startswith(prefix) and name not in known:
                    refused.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    assert refused == {}


class AcmeSettings(StrictSettings):
    """A project's own settings, strict the same way."""

    model_config = SettingsConfigDict(env_prefix="ACME_")

    region: str = "eu"
    limit: int = Field(default=1, validation_alias=AliasChoices("ACME_LIMIT_CENTS", "LEGACY_LIMIT"))

    known_elsewhere = frozenset({"ACME_TOKEN"})


def test_a_projects_settings_derive_the_same_check_and_an_aliased_field_has_only_its_aliases(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """pydantic-settings reads an aliased field by its aliases only: its prefixed name would
    be ignored, so it is refused like any typo."""
    monkeypatch.setenv("ACME_TOKEN", "read by another program")
    monkeypatch.setenv("LEGACY_LIMIT", "7")
    assert AcmeSettings().limit == 7
    assert AcmeSettings.known_variables() == {
        "ACME_REGION",
        "ACME_LIMIT_CENTS",
        "LEGACY_LIMIT",
        "ACME_TOKEN",
    }
    monkeypatch.setenv("ACME_LIMIT", "9")
    with pytest.raises(UnknownSettingError) as refused:
        AcmeSettings()
    assert str(refused.value).startswith(
        "unknown variable ACME_LIMIT (did you mean ACME_LIMIT_CENTS?)"
    )
    assert refused.value.known == ("ACME_LIMIT_CENTS", "ACME_REGION", "ACME_TOKEN")


def test_a_strict_class_without_a_prefix_is_a_programming_error() -> None:
    class Unprefixed(StrictSettings):
        name: str = "x"

    with pytest.raises(TypeError, match="Unprefixed needs an env_prefix"):
        Unprefixed()
