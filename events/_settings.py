"""Kafka settings, read from the environment once, when a service is built."""

from __future__ import annotations

import re
from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AliasChoices, BeforeValidator, Field, PositiveInt
from pydantic_settings import BaseSettings, SettingsConfigDict

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


_PROFILE_TIMINGS: dict[Profile, dict[str, timedelta]] = {
    # A poll returns as soon as records arrive: its timeout only bounds how often an idle
    # consumer wakes up. The embedded broker holds a fetch for its whole max wait more
    # often than Kafka does, so the local profile keeps that wait short.
    Profile.LOCAL: {
        "session_timeout": timedelta(seconds=2),
        "heartbeat_interval": timedelta(milliseconds=500),
        "fetch_max_wait": timedelta(milliseconds=20),
        "poll_timeout": timedelta(milliseconds=100),
    },
    Profile.PRODUCTION: {
        "session_timeout": timedelta(seconds=10),
        "heartbeat_interval": timedelta(seconds=3),
        "fetch_max_wait": timedelta(milliseconds=100),
        "poll_timeout": timedelta(milliseconds=100),
    },
}


class KafkaSettings(BaseSettings):
    """How services reach and use Kafka.

    Every field reads ``CHOREO_KAFKA_<FIELD>`` (``profile`` also reads
    ``CHOREO_PROFILE``). Timing fields left unset take the profile's value.
    """

    model_config = SettingsConfigDict(
        env_prefix="CHOREO_KAFKA_", frozen=True, extra="ignore", populate_by_name=True
    )

    bootstrap: str = "127.0.0.1:9092"
    """Comma-separated ``host:port`` list of bootstrap brokers."""

    profile: Profile = Field(
        default=Profile.LOCAL,
        validation_alias=AliasChoices("CHOREO_PROFILE", "CHOREO_KAFKA_PROFILE"),
    )
    idempotence: Idempotence = Idempotence.AUTO
    session_timeout: Duration | None = None
    heartbeat_interval: Duration | None = None
    fetch_max_wait: Duration | None = None
    poll_timeout: Duration | None = None
    """How long one poll waits for records before the consumer loop looks again."""

    max_batch: PositiveInt = 500
    """Most records handled between two offset commits."""

    request_timeout: Duration = timedelta(seconds=30)
    linger: Duration = timedelta(0)
    topic_partitions: PositiveInt = 4
    """Partitions of topics the toolkit creates."""

    topic_replication: PositiveInt = 1
    """Replication factor of topics the toolkit creates."""

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
