"""The observer's settings, read from the environment once, when the service is built."""

from __future__ import annotations

import re
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated

from pydantic import AliasChoices, Field, PositiveInt, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from choreokit.events import Duration, StrictSettings

DEFAULT_TOPIC_PATTERN = r"^(?!__).+"
"""Every topic but Kafka's internal ones (``__consumer_offsets`` and the like)."""


class ObserverAuth(StrEnum):
    """Whether reading the observer's API needs a token (writes always do)."""

    OFF = "off"
    """Reads are open to whoever reaches the port (``choreo dev``; loopback only in production)."""

    TOKENS = "tokens"
    """Reads need a viewer token, writes an operator token: one listed in
    ``CHOREO_OBSERVER_TOKENS_FILE``, or a JWT of the OpenID Connect provider
    (``CHOREO_OBSERVER_OIDC_*``)."""


class ObserverSettings(StrictSettings):
    """How the saga observer runs.

    Every field reads ``CHOREO_OBSERVER_<FIELD>``; ``jaeger_url`` also reads
    ``CHOREO_JAEGER_URL``. Durations take ``250ms``, ``2s``, ``1.5``, ``5m``. Any other
    ``CHOREO_OBSERVER_*`` variable (``CHOREO_OBSERVER_OIDC_*`` included) is an error, so a
    misspelt one cannot leave a default in place (:class:`~choreokit.events.StrictSettings`).
    """

    model_config = SettingsConfigDict(
        env_prefix="CHOREO_OBSERVER_", frozen=True, extra="ignore", populate_by_name=True
    )

    known_elsewhere = frozenset({"CHOREO_OBSERVER_TOKEN"})
    """The bearer token a client sends the observer (``choreo demo --observer-token``)."""

    db: str | None = None
    """Database URL: ``sqlite:///PATH`` or ``postgresql://USER@HOST/DB``; unset means a
    SQLite file under the runtime's data directory."""

    host: str = "127.0.0.1"
    """Interface the HTTP server (UI and API) listens on."""

    port: int = Field(default=8080, ge=0, le=65535)
    """Port of the HTTP server; 0 picks a free one."""

    group: str | None = None
    """Kafka consumer group; unset means the service's name (``saga-observer``). Instances
    sharing a group (and a PostgreSQL database) share the work."""

    topic_pattern: str = DEFAULT_TOPIC_PATTERN
    """Regular expression of the topics to observe (matched from the start of the name)."""

    topic_refresh: Duration = timedelta(seconds=10)
    """How often the topic list is refreshed, so new topics matching the pattern are read."""

    specs: Annotated[tuple[Path, ...], NoDecode] = ()
    """YAML files with saga specs (comma-separated), on top of the ``choreokit.sagas``
    entry points; a YAML saga replaces an entry-point saga of the same name."""

    timeout: Duration | None = None
    """Overrides every saga's timeout (demos and tests that want stalls judged quickly)."""

    sweep_interval: Duration = timedelta(seconds=1)
    """How often flows past their deadline are judged again (stalled, failed-uncompensated)."""

    jaeger_url: str = Field(
        default="http://127.0.0.1:16686",
        validation_alias=AliasChoices("CHOREO_JAEGER_URL", "CHOREO_OBSERVER_JAEGER_URL"),
    )
    """Base URL of the Jaeger UI that flow pages link to."""

    max_page_size: int = Field(default=200, ge=50, le=10_000)
    """Largest ``limit`` the list endpoints accept (their default is 50)."""

    writers: int | None = Field(default=None, ge=1, le=16)
    """Batches written at once by one instance, each on its own connection and partitions
    (PostgreSQL; SQLite has one writer, so 1 there); unset means 4 on PostgreSQL."""

    payload_limit: PositiveInt = 16_384
    """Largest payload (bytes) kept per event; longer ones are kept truncated and flagged."""

    auth: ObserverAuth | None = None
    """``tokens`` or ``off``; unset means ``off`` in the local profile and ``tokens`` with
    ``CHOREO_PROFILE=production``. Write actions (replays, approvals) need an operator
    token either way."""

    tokens_file: Path | None = None
    """YAML list of ``{name, role, hash}`` (``choreo observer-token create`` prints an
    entry). Unset in the local profile: a development operator token is made under the
    data directory. Unset in production: the observer refuses to start."""

    allowed_hosts: Annotated[tuple[str, ...], NoDecode] = ()
    """``Host`` names answered besides loopback ones and ``host`` (comma-separated; the
    names users and proxies reach the observer by). ``*`` answers any Host: only behind a
    proxy that checks it. Other Hosts get 400 (so a DNS-rebinding page cannot read it)."""

    oidc_jwks_url: str | None = None
    """The OpenID Connect provider's JWKS URL (its discovery document's ``jwks_uri``): bearer
    JWTs signed by its keys are accepted besides the listed tokens. Needs ``oidc_issuer``
    and ``oidc_audience``; with ``CHOREO_PROFILE=production`` it must be ``https://``
    (or on loopback)."""

    oidc_issuer: str | None = None
    """The ``iss`` every accepted JWT carries (the provider's issuer URL)."""

    oidc_audience: str | None = None
    """The ``aud`` every accepted JWT names (the observer's client id at the provider)."""

    oidc_algorithms: Annotated[tuple[str, ...], NoDecode] = ("RS256", "ES256")
    """Signature algorithms accepted (comma-separated): asymmetric ones only (``RS*``,
    ``PS*``, ``ES*``, ``EdDSA``); ``none`` and ``HS*`` are refused at start."""

    oidc_leeway: Duration = timedelta(seconds=60)
    """Clock skew allowed on ``exp``, ``nbf`` and ``iat`` (at most 5 minutes)."""

    oidc_role_claim: str = Field(default="roles", pattern=r"^[A-Za-z0-9_:./-]{1,128}$")
    """The claim holding the token's roles or groups; dots walk into objects
    (``realm_access.roles`` for Keycloak). A string value is split on spaces."""

    oidc_viewer_roles: Annotated[tuple[str, ...], NoDecode] = ("viewer",)
    """Values of the role claim that make a viewer (comma-separated)."""

    oidc_operator_roles: Annotated[tuple[str, ...], NoDecode] = ("operator",)
    """Values of the role claim that make an operator (comma-separated)."""

    oidc_fetch_timeout: Duration = timedelta(seconds=5)
    """Longest wait for the JWKS URL (at most 30 seconds)."""

    oidc_cache: Duration = timedelta(minutes=5)
    """How long fetched keys are used before they are fetched again (a token with an
    unknown key id fetches them at most once per 30 seconds)."""

    @field_validator(
        "allowed_hosts",
        "oidc_algorithms",
        "oidc_viewer_roles",
        "oidc_operator_roles",
        mode="before",
    )
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(h.strip() for h in value.split(",") if h.strip())
        return value

    @field_validator("oidc_leeway")
    @classmethod
    def _small_leeway(cls, value: timedelta) -> timedelta:
        if not timedelta(0) <= value <= timedelta(minutes=5):
            raise ValueError("must be between 0 and 5 minutes")
        return value

    @field_validator("oidc_fetch_timeout")
    @classmethod
    def _bounded_fetch(cls, value: timedelta) -> timedelta:
        if not timedelta(0) < value <= timedelta(seconds=30):
            raise ValueError("must be more than 0 and at most 30 seconds")
        return value

    @field_validator("specs", mode="before")
    @classmethod
    def _split_paths(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(Path(p.strip()) for p in value.split(",") if p.strip())
        return value

    @field_validator("topic_pattern")
    @classmethod
    def _valid_pattern(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        return value

    @field_validator("jaeger_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")
