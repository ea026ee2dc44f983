"""The consuming core: route each record to its handler, a skip or the dead-letter topic.

Nothing here knows FastStream: the :class:`Dispatcher` takes one aiokafka record
at a time (``_batch.BatchProcessor`` feeds it and commits), so the same code runs
under the service runtime and in the in-memory unit tests.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import partial
from typing import Protocol

from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from choreokit.events._codec import (
    DecodedRecord,
    decode,
    header_value,
    header_values,
    record_time,
)
from choreokit.events._context import HandlerContext, current_context
from choreokit.events._dead_letter import (
    AUDIT_TOPIC,
    H_REPLAY_GROUP,
    H_REPLAY_ID,
    H_REPLAY_OF,
    dead_letter_headers,
    dead_letter_topic,
)
from choreokit.events._envelope import H_TYPE
from choreokit.events._errors import (
    ChoreoError,
    UnknownEventTypeError,
    VersionTooNewError,
)
from choreokit.events._handling import Delivery, HandlerSpec, Next, RecordInfo
from choreokit.events._ids import derived_event_id
from choreokit.events._middleware import Middleware, overrides
from choreokit.events._model import Event
from choreokit.events._outbound import SendFuture
from choreokit.events._publisher import Publisher
from choreokit.events._registry import Registry
from choreokit.events._retry import RetryPolicy, is_retriable

logger = logging.getLogger("choreokit.consumer")


_PEEKED = frozenset({H_REPLAY_GROUP, H_TYPE, H_REPLAY_ID})
"""Headers the dispatcher reads before decoding a record."""


class UnknownTypePolicy(StrEnum):
    """What happens to a record whose type no registry knows, on a handled topic."""

    DEAD_LETTER = "dead_letter"
    """Send it to the dead-letter topic: a typo or a rogue producer is seen at once."""

    SKIP = "skip"
    """Skip and count it, like a known type no handler wants."""


@dataclass
class ConsumerStats:
    """What a service's consumer did, since it started.

    Attributes:
        handled: Records whose handler succeeded.
        dead_lettered: Records sent to a dead-letter topic.
        retries: Handler tries that failed and were tried again.
        skipped: Records of types no handler here wants, by type.
        redelivered_batches: Batches that could not be fully acknowledged and
            will be read again.
        failure_events: Failure events published for dead-lettered steps
            (``on_dead_letter`` of :meth:`Service.handler`).
        commit_failures: Offset commits the group refused (the records are
            read again, here or by another member).
        lag: Records behind the end of each ``(topic, partition)`` after the
            last batch read from it (from the later of the committed and the
            held-back offset while records wait in retry lanes).
        parked: Records handed to their key's retry lane (a retry with backoff, or a
            handler slower than the poll budget), so that other keys went on.
        replays_handled: Replayed dead letters this group handled.
        replays_skipped: Replayed dead letters meant for another consumer group.
        rebalances: Partition revocations seen.
        paused: Times a partition was paused because its retry lanes were full.
        transactions_committed: Batches committed in a Kafka transaction (transactions on).
        transactions_aborted: Batch transactions aborted; their batches are read again.
        last_progress: ``time.monotonic()`` when a record was last done (handled,
            skipped, dead-lettered).
    """

    handled: int = 0
    dead_lettered: int = 0
    retries: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    redelivered_batches: int = 0
    failure_events: int = 0
    commit_failures: int = 0
    lag: dict[tuple[str, int], int] = field(default_factory=dict)
    parked: int = 0
    replays_handled: int = 0
    replays_skipped: int = 0
    rebalances: int = 0
    paused: int = 0
    transactions_committed: int = 0
    transactions_aborted: int = 0
    last_progress: float = field(default_factory=time.monotonic)
    """``time.monotonic()`` when a record was last done (handled, skipped, dead-lettered)."""


class Committer(Protocol):
    """The part of an aiokafka consumer the processor needs."""

    async def commit(self, offsets: Mapping[TopicPartition, OffsetAndMetadata]) -> None:
        """Commit ``offsets`` for the group."""
        ...

    def seek(self, partition: TopicPartition, offset: int) -> None:
        """Read ``partition`` from ``offset`` on the next fetch."""
        ...

    def pause(self, *partitions: TopicPartition) -> None:
        """Stop fetching ``partitions`` (the group membership is kept)."""
        ...

    def resume(self, *partitions: TopicPartition) -> None:
        """Fetch ``partitions`` again."""
        ...


Routes = Mapping[str, Mapping[str, HandlerSpec]]
"""topic -> event type -> handler."""


class DeadLetterSends(list[SendFuture]):
    """The sends of a dead letter, a failed replay's outcome and the step's failure event.

    Attributes:
        error: The error the record was dead-lettered with.
        attempts: How many times its handler ran.
        follow_up: Sends the failure event again, should one of these sends fail
            (the dead letter is sent again first; the event's derived id makes a
            repeat harmless).
    """

    error: BaseException
    attempts: int
    follow_up: Callable[[], Awaitable[list[SendFuture]]] | None = None


class Dispatcher:
    """Decides, for one record, between its handler, a skip and the dead-letter topic.

    :meth:`dispatch` takes an ``on_retry`` callback, called when the first try
    failed and a retry will follow after its backoff: the batch processor then
    parks the record's key and lets the retries go on in the background, so
    that the partition's other keys are not held up.
    """

    def __init__(
        self,
        *,
        routes: Routes,
        registry: Registry,
        group: str,
        publisher: Publisher,
        middlewares: Sequence[Middleware],
        retry: RetryPolicy,
        unknown_types: UnknownTypePolicy,
        stats: ConsumerStats,
    ) -> None:
        self._routes = routes
        self._registry = registry
        self._group = group
        self._publisher = publisher
        self._retry = retry
        self._unknown_types = unknown_types
        self.stats = stats
        # Per delivery in flight (keyed by id): who to tell when it starts retrying.
        self._on_retry: dict[int, Callable[[], None]] = {}
        attempt: Next = self._invoke
        for middleware in reversed(middlewares):
            if overrides(middleware, "on_attempt"):
                attempt = partial(middleware.on_attempt, call_next=attempt)
        self._attempt = attempt
        deliver: Next = self._deliver
        for middleware in reversed(middlewares):
            if overrides(middleware, "on_delivery"):
                deliver = partial(middleware.on_delivery, call_next=deliver)
        self._chain = deliver

    @property
    def group(self) -> str:
        """The consumer group this dispatcher handles records for."""
        return self._group

    async def dispatch(  # noqa: PLR0911 - one return per way a record can end
        self,
        record: ConsumerRecord[bytes, bytes],
        *,
        on_retry: Callable[[], None] | None = None,
    ) -> list[SendFuture]:
        """Handle, skip or dead-letter ``record``.

        Args:
            record: The record.
            on_retry: Called once, when a try failed and the next one waits for
                its backoff.

        Returns:
            Futures of every send the record caused (its handler's events or its
            dead letter, as :class:`DeadLetterSends`); the record is done once
            they all resolve.
        """
        route = self._routes.get(record.topic, {})
        peek = header_values(record.headers, _PEEKED)
        target = peek.get(H_REPLAY_GROUP)
        if target is not None and target != self._group:
            # A replay for another group: that group failed on it, this one did not.
            self.stats.replays_skipped += 1
            return []
        peeked = peek.get(H_TYPE)
        if peeked is not None and peeked not in route:
            return await self._unwanted(record, peeked)
        try:
            decoded = decode(
                record.headers, record.value, fallback_time=record_time(record.timestamp)
            )
        except ChoreoError as exc:
            return await self.dead_letter(record, exc, attempts=0)
        spec = route.get(decoded.envelope.type)
        if spec is None:
            return await self._unwanted(record, decoded.envelope.type)
        try:
            event = self._event(decoded, spec)
        except ChoreoError as exc:
            return await self.dead_letter(record, exc, attempts=0)
        delivery = Delivery(
            record=_info(record),
            envelope=decoded.envelope,
            event=event,
            handler=spec,
            group=self._group,
            registry=self._registry,
        )
        if on_retry is not None:
            self._on_retry[id(delivery)] = on_retry
        try:
            await self._chain(delivery)
        except Exception as exc:  # noqa: BLE001 - every failure has one answer: the dead-letter topic
            sent = await self.dead_letter(record, exc, attempts=delivery.attempt)
            sent.extend(await self._failure_event(delivery, exc))
            if delivery.handler.on_dead_letter is not None:
                sent.follow_up = partial(self._failure_event, delivery, exc)
            return sent
        finally:
            self._on_retry.pop(id(delivery), None)
        self.stats.handled += 1
        pending = delivery.pending
        replay = peek.get(H_REPLAY_ID)
        if replay is not None:
            self.stats.replays_handled += 1
            pending = [*pending, await self._replay_outcome(record, replay, "handled", None)]
        return pending

    async def _failure_event(self, delivery: Delivery, error: BaseException) -> list[SendFuture]:
        """Publish the failure event the handler declares for a dead-lettered step, if any."""
        build = delivery.handler.on_dead_letter
        if build is None:
            return []
        cause = delivery.envelope
        try:
            failure = build(delivery.event, error)
            if failure is None:
                return []
            outbound = self._publisher.prepare(
                failure,
                correlation_id=cause.correlation_id,
                causation_id=cause.id,
                event_id=derived_event_id(
                    cause.id, f"{self._group}/{delivery.handler.name}/dlq", 0
                ),
            )
        except Exception:
            # The dead letter is sent; a broken failure builder must not hold the partition.
            logger.exception(
                "on_dead_letter of %s failed for %s; only the dead letter was sent",
                delivery.handler.name,
                cause.id,
            )
            return []
        logger.warning(
            "%s gave up on %s %s; its flow fails with %s",
            self._group,
            cause.type,
            cause.id,
            outbound.envelope.type,
            extra={"correlation_id": cause.correlation_id},
        )
        self.stats.failure_events += 1
        return [await self._publisher.send(outbound)]

    def _event(self, decoded: DecodedRecord, spec: HandlerSpec) -> Event:
        envelope = decoded.envelope
        wanted = spec.model.event_info().version
        if envelope.dataversion > wanted:
            raise VersionTooNewError(envelope.type, envelope.dataversion, wanted)
        event = decoded.event(self._registry.model(envelope.type, envelope.dataversion))
        return self._registry.upcast(event, wanted)

    async def _unwanted(
        self, record: ConsumerRecord[bytes, bytes], event_type: str
    ) -> list[SendFuture]:
        if self._unknown_types is UnknownTypePolicy.SKIP or self._registry.knows(event_type):
            self.stats.skipped[event_type] += 1
            return []
        error = UnknownEventTypeError(event_type, self._registry.types())
        return await self.dead_letter(record, error, attempts=0)

    async def _deliver(self, delivery: Delivery) -> None:
        backoffs = self._retry.backoffs()
        while True:
            delivery.attempt += 1
            try:
                await self._attempt(delivery)
                break
            except Exception as exc:
                backoff = next(backoffs, None) if is_retriable(exc) else None
                if backoff is None:
                    raise
                self.stats.retries += 1
                logger.warning(
                    "handler %s failed on attempt %d (%s: %s); retrying in %.2fs",
                    delivery.handler.name,
                    delivery.attempt,
                    type(exc).__name__,
                    exc,
                    backoff,
                    extra={"correlation_id": delivery.envelope.correlation_id},
                )
                on_retry = self._on_retry.pop(id(delivery), None)
                if on_retry is not None:
                    on_retry()
                await asyncio.sleep(backoff)
        for outbound in delivery.outputs:
            delivery.pending.append(await self._publisher.send(outbound))

    async def _invoke(self, delivery: Delivery) -> None:
        spec = delivery.handler
        context = HandlerContext(delivery, self._publisher, f"{self._group}/{spec.name}")
        token = current_context.set(context)
        try:
            if spec.takes_context:
                await spec.fn(delivery.event, context)
            else:
                await spec.fn(delivery.event)
        finally:
            current_context.reset(token)
        delivery.outputs = context.outputs

    async def dead_letter(
        self, record: ConsumerRecord[bytes, bytes], error: BaseException, *, attempts: int
    ) -> DeadLetterSends:
        """Send ``record`` to its dead-letter topic with ``error``; return the sends to await."""
        topic = dead_letter_topic(record.topic)
        logger.error(
            "dead-lettering %s[%d]@%d to %s after %d attempt(s): %s: %s",
            record.topic,
            record.partition,
            record.offset,
            topic,
            attempts,
            type(error).__name__,
            error,
        )
        headers = dead_letter_headers(
            tuple(record.headers),
            error=error,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            timestamp_ms=record.timestamp,
            group=self._group,
            attempts=attempts,
        )
        futures = DeadLetterSends(
            [
                await self._publisher.send_raw(
                    topic, key=record.key, value=record.value, headers=headers
                )
            ]
        )
        futures.error, futures.attempts = error, attempts
        self.stats.dead_lettered += 1
        replay = header_value(record.headers, H_REPLAY_ID)
        if replay is not None:
            futures.append(await self._replay_outcome(record, replay, "failed", error))
        return futures

    async def _replay_outcome(
        self,
        record: ConsumerRecord[bytes, bytes],
        replay: str,
        result: str,
        error: BaseException | None,
    ) -> SendFuture:
        # The operator's tools and the observer learn from this record that the replay is over.
        of = header_value(record.headers, H_REPLAY_OF) or ""
        value = {
            "action": "outcome",
            "replay_id": replay,
            "dead_letter": of,
            "group": self._group,
            "result": result,
            "error": f"{type(error).__name__}: {error}"[:1024] if error else None,
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "at": time.time(),
        }
        return await self._publisher.send_raw(
            AUDIT_TOPIC,
            key=of.encode() or None,
            value=json.dumps(value).encode(),
            headers=[("content-type", b"application/json")],
        )


def _info(record: ConsumerRecord[bytes, bytes]) -> RecordInfo:
    return RecordInfo(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        timestamp_ms=record.timestamp,
        headers=tuple(record.headers),
        value=record.value,
    )
