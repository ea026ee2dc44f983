"""Kafka settings, read from the environment once, when a service is built."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import (
    AliasChoices,
    BeforeValidator,
    Field,
    PositiveInt,
    SecretStr,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from choreokit.events._errors import UnknownSettingError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(value: Any) -> Any:
    """Read ``250ms``, ``2s``, ``1.5`` (seconds), ``5m`` or ``1h``; pass other forms on."""
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])
    return value


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
"""A duration from the environment: ``250ms``, ``2s``, ``1.5``, ``5m``, ``1h`` or ISO 8601."""


class Profile(StrEnum):
    """Which defaults the timing settings take when they are not set."""

    LOCAL = "local"
    """The embedded broker on one machine: short timeouts, quick rebalances."""

    PRODUCTION = "production"
    """Apache Kafka: the client library's conservative timeouts."""


class Idempotence(StrEnum):
    """Whether the producer asks the broker for idempotent writes."""

    AUTO = "auto"
    """On if the broker grants a producer id (Apache Kafka), off if not (Tansu)."""

    ON = "on"
    """Always on; the producer fails to send if the broker cannot do it."""

    OFF = "off"
    """Always off; a retried send may write a duplicate (consumers deduplicate by id)."""


class Isolation(StrEnum):
    """Which records a consumer reads of topics written in Kafka transactions."""

    READ_COMMITTED = "read_committed"
    """Only records of committed transactions (and records written outside any)."""

    READ_UNCOMMITTED = "read_uncommitted"
    """Every record, aborted transactions' included: no exactly-once for this reader."""


_TRANSACTIONAL_ID = re.compile(r"^[A-Za-z0-9._-]{1,200}$")

_PROFILE_TIMINGS: dict[Profile, dict[str, timedelta]] = {
    # A poll returns as soon as records arrive: its timeout only bounds how often an idle
    # consumer wakes up. The embedded broker looks for records only at the start and the
    # end of a fetch wait under 250 ms (at its halves above that), so the local profile
    # keeps that wait short while records flow. An idle consumer lengthens it up to the
    # idle wait (events/_fetch_wait.py): 300 ms is just past Tansu's 250 ms, where it
    # starts looking at the wait's half, so the first record after an idle spell waits
    # at most ~150 ms there; Apache Kafka answers at once whatever the wait.
    Profile.LOCAL: {
        "session_timeout": timedelta(seconds=2),
        "heartbeat_interval": timedelta(milliseconds=500),
        "fetch_max_wait": timedelta(milliseconds=20),
        "fetch_idle_wait": timedelta(milliseconds=300),
        "poll_timeout": timedelta(milliseconds=100),
    },
    Profile.PRODUCTION: {
        "session_timeout": timedelta(seconds=10),
        "heartbeat_interval": timedelta(seconds=3),
        "fetch_max_wait": timedelta(milliseconds=100),
        "fetch_idle_wait": timedelta(milliseconds=500),
        "poll_timeout": timedelta(milliseconds=100),
    },
}


class SecurityProtocol(StrEnum):
    """How clients talk to the brokers (Kafka's ``security.protocol``)."""

    PLAINTEXT = "PLAINTEXT"
    """No encryption, no authentication: local development only."""

    SSL = "SSL"
    """TLS; clients authenticate with a certificate if one is set."""

    SASL_PLAINTEXT = "SASL_PLAINTEXT"
    """SASL without TLS: credentials cross the network in the clear (refused in production)."""

    SASL_SSL = "SASL_SSL"
    """SASL over TLS: what a production cluster should ask for."""


class SaslMechanism(StrEnum):
    """How a client proves who it is over SASL."""

    PLAIN = "PLAIN"
    SCRAM_SHA_256 = "SCRAM-SHA-256"
    SCRAM_SHA_512 = "SCRAM-SHA-512"
    OAUTHBEARER = "OAUTHBEARER"


def settings_variables(settings: type[BaseSettings]) -> frozenset[str]:
    """The variables a settings class reads: its prefix plus each field's name.

    A field with a validation alias is read by its alias choices only (pydantic-settings
    applies no prefix to them), so those are its variables.
    """
    prefix = str(settings.model_config.get("env_prefix", ""))
    names: set[str] = set()
    for name, field in settings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(str(choice).upper() for choice in alias.choices)
        elif isinstance(alias, str):
            names.add(alias.upper())
        else:
            names.add(f"{prefix}{name}".upper())
    return frozenset(names)


class StrictSettings(BaseSettings):
    """Settings that own their prefix: a variable of it that names no setting is an error.

    A subclass sets ``env_prefix`` (e.g. ``CHOREO_OBSERVER_``); building it raises
    :class:`UnknownSettingError` for any ``<prefix>*`` variable that is none of its fields
    or aliases, nor one of :attr:`known_elsewhere`, naming the closest known variable and
    all of them. So a misspelt ``CHOREO_OBSERVER_TOKNES_FILE`` stops the service instead of
    leaving the default in place. Frozen; variables of other prefixes are left alone.
    """

    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    known_elsewhere: ClassVar[frozenset[str]] = frozenset()
    """Variables of the prefix that something else reads (a command-line option, a tool):
    accepted, since ``choreo dev`` hands one environment to every process."""

    def __init__(self, **values: Any) -> None:
        refuse_unknown_variables(type(self))
        super().__init__(**values)

    @classmethod
    def known_variables(cls) -> frozenset[str]:
        """The variables accepted: the fields' (and aliases) and :attr:`known_elsewhere`."""
        return settings_variables(cls) | cls.known_elsewhere


def refuse_unknown_variables(
    settings: type[StrictSettings], environ: Mapping[str, str] = os.environ
) -> None:
    """Raise if ``environ`` holds a variable of ``settings``' prefix that it does not know.

    Raises:
        UnknownSettingError: Such variables are set; the message names the closest known ones.
        TypeError: ``settings`` declares no ``env_prefix``.
    """
    prefix = str(settings.model_config.get("env_prefix", "")).upper()
    if not prefix:
        raise TypeError(f"{settings.__name__} needs an env_prefix to refuse unknown variables")
    known = {n for n in settings.known_variables() if n.startswith(prefix)}
    unknown = sorted(n for n in environ if n.upper().startswith(prefix) and n.upper() not in known)
    if unknown:
        raise UnknownSettingError(prefix, unknown, known)


NOT_CLIENT_VARIABLES = frozenset({"CHOREO_KAFKA_HOME", "CHOREO_KAFKA_POM"})
"""``CHOREO_KAFKA_*`` variables that configure tools, not clients (an Apache Kafka
distribution, or the pom resolving its jars, for ``choreo broker --engine kafka``)."""


class KafkaSettings(StrictSettings):
    """How services reach and use Kafka.

    Every field reads ``CHOREO_KAFKA_<FIELD>`` (``profile`` also reads
    ``CHOREO_PROFILE``). Timing fields left unset take the profile's value. A
    ``CHOREO_KAFKA_*`` variable that names no field is an error, so a typo in a
    security setting cannot leave a client on plaintext unnoticed.
    """

    model_config = SettingsConfigDict(
        env_prefix="CHOREO_KAFKA_", frozen=True, extra="ignore", populate_by_name=True
    )

    known_elsewhere = NOT_CLIENT_VARIABLES

    bootstrap: str = "127.0.0.1:9092"
    """Comma-separated ``host:port`` list of bootstrap brokers."""

    profile: Profile = Field(
        default=Profile.LOCAL,
        validation_alias=AliasChoices("CHOREO_PROFILE", "CHOREO_KAFKA_PROFILE"),
    )
    idempotence: Idempotence = Idempotence.AUTO
    transactions: bool = False
    """Run each batch's handling in a Kafka transaction: the events it publishes and its
    consumed offsets are committed together (``CHOREO_KAFKA_TRANSACTIONS=on``; Apache Kafka
    only, refused at start by a broker that cannot). See docs/reliability.md, "Exactly-once"."""

    transactional_id: str | None = None
    """The service instance's transactional id; stable across restarts, so that a restarted
    instance fences its predecessor. Default: ``<service>-<host name>``; set it (e.g. to a
    StatefulSet pod's name) when one host runs more than one instance of a service."""

    transaction_timeout: Duration = timedelta(seconds=60)
    """How long the broker lets a transaction stay open; a crashed instance's open
    transaction holds ``read_committed`` readers of its partitions at most this long (less if
    the instance comes back with its transactional id)."""

    isolation: Isolation | None = None
    """What consumers read: ``read_committed`` or ``read_uncommitted``. Default:
    ``read_committed`` when :attr:`transactions` is on, else ``read_uncommitted``. Readers
    of a transactional service's topics (its downstream services, the observer) want
    ``read_committed`` even when they run no transactions themselves."""
    session_timeout: Duration | None = None
    heartbeat_interval: Duration | None = None
    fetch_max_wait: Duration | None = None
    """How long the broker may hold a consumer's fetch while records flow."""

    fetch_idle_wait: Duration | None = None
    """The longest fetch wait of an idle consumer: one that has had no record for
    :attr:`fetch_idle_after` doubles its wait at each empty poll up to this, and drops back
    to :attr:`fetch_max_wait` at its first record. No longer than :attr:`fetch_max_wait`
    keeps the wait fixed. Default: the profile's (local 300 ms, production 500 ms)."""

    fetch_idle_after: Duration = timedelta(seconds=10)
    """How long a consumer has had no record before its fetch wait starts to grow. Traffic
    with gaps shorter than this never meets a longer wait: on the embedded broker the first
    event after a longer silence waits up to half the idle wait at each idle hop."""

    poll_timeout: Duration | None = None
    """How long one poll waits for records before the consumer loop looks again."""

    max_poll_interval: Duration = timedelta(minutes=5)
    """Longest time between two polls before the group evicts the member
    (``max.poll.interval.ms``). A batch returns to the poll loop within half of it:
    a handler slower than that goes on in its key's lane, in the background."""

    stall_after: Duration = timedelta(minutes=2)
    """A consumer with lag that has finished no record for this long is not healthy."""

    max_parked: PositiveInt = 1000
    """Most records a partition holds in retry lanes before it is paused."""

    max_batch: PositiveInt = 500
    """Most records handled between two offset commits."""

    request_timeout: Duration = timedelta(seconds=30)
    linger: Duration = timedelta(0)
    topic_partitions: PositiveInt = 4
    """Partitions of topics the toolkit creates."""

    topic_replication: PositiveInt = 1
    """Replication factor of topics the toolkit creates."""

    security_protocol: SecurityProtocol = SecurityProtocol.PLAINTEXT
    """``PLAINTEXT``, ``SSL``, ``SASL_PLAINTEXT`` or ``SASL_SSL``; production refuses the
    plaintext ones."""

    ssl_cafile: Path | None = None
    """PEM file of the CA(s) that signed the brokers' certificates (else the system's)."""

    ssl_certfile: Path | None = None
    """PEM client certificate (mutual TLS), with :attr:`ssl_keyfile`."""

    ssl_keyfile: Path | None = None
    """PEM private key of :attr:`ssl_certfile`."""

    ssl_key_password: SecretStr | None = None
    """Password of :attr:`ssl_keyfile`, if it is encrypted."""

    ssl_check_hostname: bool = True
    """Whether the broker's certificate must name the host connected to (production: always)."""

    sasl_mechanism: SaslMechanism | None = None
    """``PLAIN``, ``SCRAM-SHA-256``, ``SCRAM-SHA-512`` or ``OAUTHBEARER``."""

    sasl_username: str | None = None
    """The SASL user (the service's principal)."""

    sasl_password: SecretStr | None = None
    """The SASL password (never logged; shown as ``**********``)."""

    sasl_oauth_token_file: Path | None = None
    """OAUTHBEARER: a file holding the current token, read at each authentication."""

    @model_validator(mode="after")
    def _transactions_need_idempotence(self) -> KafkaSettings:
        if self.transactions and self.idempotence is Idempotence.OFF:
            raise ValueError(
                "CHOREO_KAFKA_TRANSACTIONS=on needs an idempotent producer; "
                "unset CHOREO_KAFKA_IDEMPOTENCE (or set it to on or auto)"
            )
        idle_wait = self.fetch_idle_wait
        if idle_wait is not None and idle_wait >= self.request_timeout:
            raise ValueError(
                f"CHOREO_KAFKA_FETCH_IDLE_WAIT ({idle_wait}) must be shorter than "
                f"CHOREO_KAFKA_REQUEST_TIMEOUT ({self.request_timeout}), or an idle consumer's "
                "fetches time out"
            )
        if self.transactional_id is not None and not _TRANSACTIONAL_ID.match(self.transactional_id):
            raise ValueError(
                f"CHOREO_KAFKA_TRANSACTIONAL_ID {self.transactional_id!r} must be 1-200 letters, "
                "digits, '.', '_' or '-'"
            )
        return self

    def isolation_level(self) -> Isolation:
        """:attr:`isolation`, or its default: read_committed when transactions are on."""
        if self.isolation is not None:
            return self.isolation
        return Isolation.READ_COMMITTED if self.transactions else Isolation.READ_UNCOMMITTED

    def timing(self, name: str) -> timedelta:
        """Return a timing field, falling back to the profile's default."""
        value = getattr(self, name)
        if value is None:
            value = _PROFILE_TIMINGS[self.profile][name]
        assert isinstance(value, timedelta)
        return value


def millis(value: timedelta) -> int:
    """Return ``value`` in whole milliseconds, as Kafka clients take durations."""
    return int(value.total_seconds() * 1000)
