"""Publishing events: envelope assignment, the publish middleware chain, and the producer."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    KafkaError,
    OutOfOrderSequenceNumber,
    TopicAuthorizationFailedError,
    UnknownProducerId,
)

from choreokit.events._codec import encode_headers, encode_payload
from choreokit.events._envelope import Envelope
from choreokit.events._errors import ConfigurationError, publish_error
from choreokit.events._ids import new_event_id
from choreokit.events._middleware import Middleware, overrides
from choreokit.events._model import Event
from choreokit.events._outbound import Outbound, Send, SendFuture

logger = logging.getLogger("choreokit.publisher")

_SEQUENCE_LOST = (OutOfOrderSequenceNumber, UnknownProducerId)
"""Errors after which an idempotent producer never sends again: its sequence numbers and
the broker's disagree for good (aiokafka neither bumps the epoch nor resets them, as the
Java client does; aio-libs/aiokafka#1017). A batch that expired during an outage leaves
such a gap. Only a new producer (a new producer id) sends again."""

Renew = Callable[[], Awaitable[AIOKafkaProducer]]


class Publisher:
    """Turns events into records and sends them through the publish middlewares.

    Sends are pipelined: :meth:`send` returns as soon as the producer has taken
    the record, with a future that resolves on the broker's acknowledgement.

    With ``renew``, a producer whose sequence numbers the broker no longer accepts
    (``OutOfOrderSequenceNumber``, ``UnknownProducerId``) is replaced by the one
    ``renew`` starts; the sends that failed are the callers' to retry, as any
    unacknowledged send (at-least-once, the same ``ce_id``).
    """

    def __init__(
        self,
        producer: AIOKafkaProducer,
        *,
        source: str,
        middlewares: Sequence[Middleware] = (),
        allowed: frozenset[type[Event]] | None = None,
        renew: Renew | None = None,
    ) -> None:
        self._producer = producer
        self._renew = renew
        self._renewing: asyncio.Task[None] | None = None
        self.renewals = 0
        """Producers replaced after their sequence numbers were lost."""
        self.source = source
        self._allowed = allowed
        send: Send = self._send_record
        for middleware in reversed(middlewares):
            if overrides(middleware, "on_publish"):
                send = partial(middleware.on_publish, send=send)
        self._send = send

    def prepare(
        self,
        event: Event,
        *,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        event_id: str | None = None,
        time: datetime | None = None,
        joined: str | None = None,
        source: str | None = None,
        traceparent: str | None = None,
        tracestate: str | None = None,
        payload: bytes | None = None,
    ) -> Outbound:
        """Assign ``event`` its envelope: a new flow unless a correlation id is given.

        ``joined`` is the ``joined`` extension of a join's output (the other inputs' ids);
        ``source`` replaces the publisher's own (an edge publishing for others);
        ``traceparent``/``tracestate`` give the envelope a trace context now;
        ``payload`` is ``encode_payload(event)`` when the caller has it already.
        """
        if self._allowed is not None and type(event) not in self._allowed:
            raise ConfigurationError(
                f"{type(event).__qualname__} is not among the events this service declared "
                "in publishes=...; add it there"
            )
        info = type(event).event_info()
        eid = event_id or new_event_id()
        correlation = correlation_id or eid
        envelope = Envelope(
            eid,
            source or self.source,
            info.type,
            info.version,
            time or datetime.now(UTC),
            correlation,
            causation_id,
            traceparent,
            tracestate,
            joined,
        )
        return Outbound(
            topic=info.topic,
            key=correlation.encode(),
            value=encode_payload(event) if payload is None else payload,
            envelope=envelope,
            event=event,
        )

    async def send(self, outbound: Outbound) -> SendFuture:
        """Hand ``outbound`` to the producer; the future resolves on acknowledgement."""
        return await self._send(outbound)

    async def publish(self, event: Event, **attributes: Any) -> Envelope:
        """Publish one event and wait for the broker's acknowledgement.

        Keyword arguments are those of :meth:`prepare`.

        Raises:
            PublishError: The broker did not acknowledge the record.
        """
        outbound = self.prepare(event, **attributes)
        future = await self.send(outbound)
        try:
            await future
        except KafkaError as exc:
            refused = _refused(outbound.topic, exc)
            raise publish_error(
                f"{outbound.envelope.type} was not acknowledged: {exc}{refused}", exc
            ) from exc
        return outbound.envelope

    async def send_raw(
        self,
        topic: str,
        *,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes]],
    ) -> SendFuture:
        """Send a record as given, bypassing the middlewares (dead letters, replays)."""
        try:
            producer = self._producer
            future: SendFuture = await producer.send(topic, value=value, key=key, headers=headers)
            self._watch(future, producer)
        except KafkaError as exc:
            raise publish_error(
                f"cannot send a record to {topic}: {exc}{_refused(topic, exc)}", exc
            ) from exc
        return future

    async def _send_record(self, outbound: Outbound) -> SendFuture:
        try:
            producer = self._producer
            future: SendFuture = await producer.send(
                outbound.topic,
                value=outbound.value,
                key=outbound.key,
                headers=encode_headers(outbound.envelope) + list(outbound.headers)
                if outbound.headers
                else encode_headers(outbound.envelope),
            )
            self._watch(future, producer)
        except KafkaError as exc:
            raise publish_error(
                f"cannot send {outbound.envelope.type}: {exc}{_refused(outbound.topic, exc)}", exc
            ) from exc
        return future

    @property
    def producer(self) -> AIOKafkaProducer:
        """The producer sends go through now (a renewed one after a lost sequence)."""
        return self._producer

    async def detach(self) -> AIOKafkaProducer:
        """Stop renewing (a renewal under way finishes first); return the current producer."""
        renewing, self._renew = self._renewing, None
        if renewing is not None:
            await asyncio.gather(renewing, return_exceptions=True)
        return self._producer

    def _watch(self, future: SendFuture, producer: AIOKafkaProducer) -> None:
        if self._renew is not None:
            future.add_done_callback(partial(self._sequence_lost, producer))

    def _sequence_lost(self, producer: AIOKafkaProducer, future: SendFuture) -> None:
        if future.cancelled() or not isinstance(future.exception(), _SEQUENCE_LOST):
            return
        if producer is not self._producer or self._renewing is not None or self._renew is None:
            return  # replaced already, or being replaced
        logger.warning(
            "the broker no longer accepts this producer's sequence numbers (%s); "
            "starting a new producer",
            type(future.exception()).__name__,
        )
        self._renewing = asyncio.ensure_future(self._replace(producer, self._renew))

    async def _replace(self, old: AIOKafkaProducer, renew: Renew) -> None:
        try:
            new = await renew()
        except Exception:  # the next lost sequence tries again
            logger.exception("could not start a new producer; sends keep failing meanwhile")
            self._renewing = None
            return
        self._producer = new
        self._renewing = None
        self.renewals += 1
        try:
            await old.stop()
        except Exception:  # its pending sends failed already; nothing is lost by dropping it
            logger.warning("the replaced producer did not stop cleanly", exc_info=True)


def _refused(topic: str, exc: KafkaError) -> str:
    """What to do when the broker's ACLs refuse the write (empty for other errors)."""
    if not isinstance(exc, TopicAuthorizationFailedError):
        return ""
    return (
        f" (the broker refused this principal WRITE on topic {topic!r}: declare the event in "
        "the service's publishes= and grant what 'choreo topics acls' prints)"
    )
