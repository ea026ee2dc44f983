"""The gateway's link to Kafka: a publishing service started in the background, and a probe.

The HTTP side starts at once, whether the broker is there or not; until the
link is up, and whenever the probe finds the broker unreachable, requests are
answered 503 at once instead of waiting on a broker that does not answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import timedelta

from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError

from choreokit.events import (
    BrokerUnavailableError,
    ChoreoError,
    KafkaSettings,
    Publisher,
    Service,
    client_options,
    millis,
)

logger = logging.getLogger("choreokit.gateway")
_MAX_BACKOFF = 10.0


class KafkaLink:
    """Keeps ``service`` connected and tells whether the broker currently answers.

    Args:
        service: The service that publishes (no handlers; ``publishes`` lists
            every type the gateway may forward).
        settings: Where the broker is.
        probe_interval: How often to ask the broker for metadata.
        probe_timeout: How long an answer may take before the broker counts as down.
        on_change: Called with the new state whenever it changes.
    """

    def __init__(
        self,
        service: Service,
        settings: KafkaSettings,
        *,
        probe_interval: timedelta,
        probe_timeout: timedelta,
        on_change: Callable[[bool], None] = lambda _up: None,
    ) -> None:
        self._service = service
        self._settings = settings
        self._interval = probe_interval.total_seconds()
        self._timeout = probe_timeout.total_seconds()
        self._on_change = on_change
        self._started = False
        self._up = False
        self.connected = asyncio.Event()
        """Set the first time the link comes up (and stays set)."""
        self._reason = "not connected yet"

    @property
    def up(self) -> bool:
        """Whether events can be published now."""
        return self._started and self._up

    @property
    def reason(self) -> str:
        """Why the link is down (or ``connected``)."""
        return "connected" if self.up else self._reason

    def publisher(self) -> Publisher:
        """The publisher, if the broker answers.

        Raises:
            BrokerUnavailableError: It does not (or the link is not up yet).
        """
        if not self.up:
            raise BrokerUnavailableError(
                f"Kafka at {self._settings.bootstrap} is unreachable ({self._reason})"
            )
        return self._service.publisher

    def mark_down(self, reason: str) -> None:
        """Record that a publish failed; the probe brings the link back up."""
        self._set(up=False, reason=reason)

    def _set(self, *, up: bool, reason: str = "") -> None:
        if up != self._up:
            log = logger.info if up else logger.warning
            log("Kafka at %s is %s", self._settings.bootstrap, "up" if up else f"down: {reason}")
            self._up = up
            self._on_change(up)
        if not up:
            self._reason = reason

    async def run(self, stop: asyncio.Event) -> None:
        """Connect (retrying with backoff), then probe until ``stop`` is set; then disconnect."""
        client: AIOKafkaClient | None = None
        try:
            backoff = 0.5
            while not stop.is_set():
                try:
                    await self._service.start()
                    client = AIOKafkaClient(
                        **{
                            **client_options(self._settings),
                            "request_timeout_ms": max(1, millis(timedelta(seconds=self._timeout))),
                        },
                        client_id=f"{self._service.name}-probe",
                    )
                    await client.bootstrap()
                    break
                except (ChoreoError, KafkaError, OSError) as exc:
                    self._reason = str(exc)
                    logger.warning("cannot connect to Kafka yet (%s); retrying", exc)
                    if client is not None:
                        await client.close()
                        client = None
                    await _wait(stop, backoff)
                    backoff = min(backoff * 2, _MAX_BACKOFF)
            if stop.is_set() or client is None:
                return
            self._started = True
            self._set(up=True)
            self.connected.set()
            while not stop.is_set():
                await self._probe(client)
                await _wait(stop, self._interval)
        finally:
            self._started = False
            if client is not None:
                await client.close()
            await self._service.stop()

    async def _probe(self, client: AIOKafkaClient) -> None:
        try:
            await asyncio.wait_for(client.fetch_all_metadata(), self._timeout)
        except (TimeoutError, KafkaError, OSError) as exc:
            why = str(exc) or "timed out"
            self._set(up=False, reason=f"no answer to a metadata request: {why}")
        else:
            self._set(up=True)


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
