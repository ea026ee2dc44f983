"""Publishing events: envelope assignment, the publish middleware chain, and the producer."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, TopicAuthorizationFailedError

from choreokit.events._codec import encode_headers, encode_payload
from choreokit.events._envelope import Envelope
from choreokit.events._errors import ConfigurationError, publish_error
from choreokit.events._ids import new_event_id
from choreokit.events._middleware import Middleware, overrides
from choreokit.events._model import Event
from choreokit.events._outbound import Outbound, Send, SendFuture


class Publisher:
    """Turns events into records and sends them through the publish middlewares.

    Sends are pipelined: :meth:`send` returns as soon as the producer has taken
    the record, with a future that resolves on the broker's acknowledgement.
    """

    def __init__(
        self,
        producer: AIOKafkaProducer,
        *,
        source: str,
        middlewares: Sequence[Middleware] = (),
        allowed: frozenset[type[Event]] | None = None,
    ) -> None:
        self._producer = producer
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
    ) -> Outbound:
        """Assign ``event`` its envelope: a new flow unless a correlation id is given.

        ``joined`` is the ``joined`` extension of a join's output (the other inputs' ids).
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
            id=eid,
            source=self.source,
            type=info.type,
            dataversion=info.version,
            time=time or datetime.now(UTC),
            correlation_id=correlation,
            causation_id=causation_id,
            joined=joined,
        )
        return Outbound(
            topic=info.topic,
            key=correlation.encode(),
            value=encode_payload(event),
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
            future: SendFuture = await self._producer.send(
                topic, value=value, key=key, headers=headers
            )
        except KafkaError as exc:
            raise publish_error(
                f"cannot send a record to {topic}: {exc}{_refused(topic, exc)}", exc
            ) from exc
        return future

    async def _send_record(self, outbound: Outbound) -> SendFuture:
        try:
            future: SendFuture = await self._producer.send(
                outbound.topic,
                value=outbound.value,
                key=outbound.key,
                headers=encode_headers(outbound.envelope) + list(outbound.headers)
                if outbound.headers
                else encode_headers(outbound.envelope),
            )
        except KafkaError as exc:
            raise publish_error(
                f"cannot send {outbound.envelope.type}: {exc}{_refused(outbound.topic, exc)}", exc
            ) from exc
        return future


def _refused(topic: str, exc: KafkaError) -> str:
    """What to do when the broker's ACLs refuse the write (empty for other errors)."""
    if not isinstance(exc, TopicAuthorizationFailedError):
        return ""
    return (
        f" (the broker refused this principal WRITE on topic {topic!r}: declare the event in "
        "the service's publishes= and grant what 'choreo topics acls' prints)"
    )
