"""The gateway's settings, read from the environment once, when the service is built."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from pydantic import ByteSize, Field, PositiveFloat, PositiveInt
from pydantic_settings import SettingsConfigDict

from choreokit.events import Duration, StrictSettings

DEFAULT_PORT = 8081
MIB = 1024 * 1024


class GatewaySettings(StrictSettings):
    """How the HTTP gateway listens, what it accepts and how it publishes.

    Every field reads ``CHOREO_GATEWAY_<FIELD>``, e.g. ``CHOREO_GATEWAY_PORT=8081``,
    ``CHOREO_GATEWAY_MAX_BODY=1MiB``, ``CHOREO_GATEWAY_PUBLISH_TIMEOUT=5s``.
    Kafka itself is configured by ``CHOREO_KAFKA_*`` (:class:`events.KafkaSettings`).
    An empty variable counts as unset (compose files often pass empty ones). Any other
    ``CHOREO_GATEWAY_*`` variable is an error (:class:`~choreokit.events.StrictSettings`).
    """

    model_config = SettingsConfigDict(
        env_prefix="CHOREO_GATEWAY_", frozen=True, extra="ignore", env_ignore_empty=True
    )

    known_elsewhere = frozenset({"CHOREO_GATEWAY_URL", "CHOREO_GATEWAY_KEY"})
    """Where clients find the gateway and the API key they send (the examples of
    ``docs/publishing-from-other-systems.md`` read them), not the gateway's own settings."""

    host: str = "127.0.0.1"
    """Interface to listen on (``0.0.0.0`` in a container)."""

    port: int = Field(default=DEFAULT_PORT, ge=0, le=65535)
    """TCP port; 0 picks a free one (tests)."""

    max_body: ByteSize = ByteSize(MIB)
    """Largest request body accepted, with or without ``Content-Length`` (``1MiB``, ``512KB``)."""

    max_batch: PositiveInt = 100
    """Most events in one batch request."""

    keys_file: Path | None = None
    """A YAML or JSON file of API keys (see ``docs/gateway.md``)."""

    keys: str | None = None
    """API keys inline, in the format of :attr:`keys_file` (YAML or JSON text)."""

    rate: PositiveFloat = 100.0
    """Requests per second a key may make, unless its entry says otherwise."""

    burst: PositiveInt = 200
    """Requests a key may make at once before :attr:`rate` applies, unless its entry says."""

    auth_failures: PositiveInt = 10
    """Failed authentications from one client address, within :attr:`auth_failure_window`,
    after which that address is answered 429 until the oldest failure is that old."""

    auth_failure_window: Duration = timedelta(seconds=60)
    """How long a failed authentication counts against its address."""

    header_timeout: Duration = timedelta(seconds=10)
    """Longest time a request's line and headers may take to arrive; slower ones are cut."""

    body_timeout: Duration = timedelta(seconds=30)
    """Longest time a request's body may take to arrive after its head; else 408."""

    max_connections: PositiveInt = 1024
    """Connections and requests at once; more are answered 503."""

    publish_timeout: Duration = timedelta(seconds=5)
    """Longest wait for the broker to acknowledge a request's events before answering 503."""

    dedup_window: Duration = timedelta(minutes=10)
    """How long an accepted event id is remembered, so a retry is not published again."""

    dedup_capacity: PositiveInt = 100_000
    """Most event ids remembered at once (the oldest are forgotten first)."""

    probe_interval: Duration = timedelta(seconds=1)
    """How often the gateway checks that the broker answers (an unreachable one means 503)."""
