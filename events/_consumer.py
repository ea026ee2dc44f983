"""The consuming core: route each record, handle or dead-letter it, commit what is done.

Nothing here knows FastStream: :class:`BatchProcessor` takes a batch of aiokafka
records and a consumer to commit on, so the same code runs under the service
runtime and in the in-memory unit tests.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import partial
from typing import Any, Protocol

from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata

from choreokit.events._codec import DecodedRecord, decode, header_value, record_time
from choreokit.events._context import HandlerContext, current_context
from choreokit.events._dead_letter import dead_letter_headers, dead_letter_topic
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
            last batch read from it.
    """

    handled: int = 0
    dead_lettered: int = 0
    retries: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    redelivered_batches: int = 0
    failure_events: int = 0
    commit_failures: int = 0
    lag: dict[tuple[str, int], int] = field(default_factory=dict)


class Committer(Protocol):
    """The part of an aiokafka consumer the processor needs."""

    async def commit(self, offsets: Mapping[TopicPartition, OffsetAndMetadata]) -> None:
        """Commit ``offsets`` for the group."""
        ...

    def seek(self, partition: TopicPartition, offset: int) -> None:
        """Read ``partition`` from ``offset`` on the next fetch."""
        ...


Routes = Mapping[str, Mapping[str, HandlerSpec]]
"""topic -> event type -> handler."""


class Dispatcher:
    """Decides, for one record, between its handler, a skip and the dead-letter topic."""

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

    async def dispatch(self, record: ConsumerRecord[bytes, bytes]) -> list[SendFuture]:
        """Handle, skip or dead-letter ``record``.

        Returns:
            Futures of every send the record caused (its handler's events or its
            dead letter); the record is done once they all resolve.
        """
        route = self._routes.get(record.topic, {})
        peeked = header_value(record.headers, H_TYPE)
        if peeked is not None and peeked not in route:
            return await self._unwanted(record, peeked)
        try:
            decoded = decode(
                record.headers, record.value, fallback_time=record_time(record.timestamp)
            )
        except ChoreoError as exc:
            return [await self._dead_letter(record, exc, attempts=0)]
        spec = route.get(decoded.envelope.type)
        if spec is None:
            return await self._unwanted(record, decoded.envelope.type)
        try:
            event = self._event(decoded, spec)
        except ChoreoError as exc:
            return [await self._dead_letter(record, exc, attempts=0)]
        delivery = Delivery(
            record=_info(record),
            envelope=decoded.envelope,
            event=event,
            handler=spec,
            group=self._group,
        )
        try:
            await self._chain(delivery)
        except Exception as exc:  # noqa: BLE001 - every failure has one answer: the dead-letter topic
            sent = [await self._dead_letter(record, exc, attempts=delivery.attempt)]
            return sent + await self._failure_event(delivery, exc)
        self.stats.handled += 1
        return delivery.pending

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

    async def _unwanted(self, record: ConsumerRecord[bytes, bytes], event_type: str) -> list[Any]:
        if self._unknown_types is UnknownTypePolicy.SKIP or self._registry.knows(event_type):
            self.stats.skipped[event_type] += 1
            return []
        error = UnknownEventTypeError(event_type, self._registry.types())
        return [await self._dead_letter(record, error, attempts=0)]

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

    async def _dead_letter(
        self, record: ConsumerRecord[bytes, bytes], error: BaseException, *, attempts: int
    ) -> SendFuture:
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
        future = await self._publisher.send_raw(
            topic, key=record.key, value=record.value, headers=headers
        )
        self.stats.dead_lettered += 1
        return future


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


class BatchProcessor:
    """Handles a batch partition by partition and commits what is fully acknowledged.

    Records of one partition are handled in order; partitions run side by side.
    A record counts as done once every send it caused has been acknowledged; the
    committed offset of a partition stops before its first record that is not
    done, and the consumer is rewound there, so that record and those after it
    are read again (at-least-once; ids derived from the cause let the next hop
    drop the repeats).
    """

    def __init__(self, dispatcher: Dispatcher, *, concurrent_partitions: bool = True) -> None:
        self._dispatcher = dispatcher
        self._concurrent = concurrent_partitions

    async def process(
        self, records: Sequence[ConsumerRecord[bytes, bytes]], consumer: Committer
    ) -> bool:
        """Handle ``records`` and commit; return whether every record was done."""
        by_partition: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] = defaultdict(list)
        for record in records:
            by_partition[TopicPartition(record.topic, record.partition)].append(record)
        jobs = [self._partition(tp, batch, consumer) for tp, batch in by_partition.items()]
        if self._concurrent and len(jobs) > 1:
            results = await asyncio.gather(*jobs)
        else:
            results = [await job for job in jobs]
        offsets = {
            tp: OffsetAndMetadata(offset, "")
            for tp, (offset, _) in zip(by_partition, results, strict=True)
            if offset is not None
        }
        complete = all(done for _, done in results)
        if not complete:
            self._dispatcher.stats.redelivered_batches += 1
        if offsets:
            try:
                await consumer.commit(offsets)
            except KafkaError as exc:
                self._dispatcher.stats.commit_failures += 1
                # The partitions moved to another member, which reads them from the last
                # committed offset: these records are handled again there, never lost.
                logger.warning("offset commit failed (%s); the records will be redelivered", exc)
                return False
        return complete

    async def _partition(
        self,
        tp: TopicPartition,
        records: list[ConsumerRecord[bytes, bytes]],
        consumer: Committer,
    ) -> tuple[int | None, bool]:
        sends: list[tuple[int, list[SendFuture]]] = []
        failed_at: int | None = None
        for record in records:
            try:
                sends.append((record.offset, await self._dispatcher.dispatch(record)))
            except Exception:
                # Not even a dead letter could be sent (or a bug): stop here, read it again.
                logger.exception("cannot finish %s@%d; it will be read again", tp, record.offset)
                failed_at = record.offset
                break
        commit_to: int | None = None
        for offset, futures in sends:
            if futures:
                outcomes = await asyncio.gather(*futures, return_exceptions=True)
                error = next((o for o in outcomes if isinstance(o, BaseException)), None)
                if error is not None:
                    logger.error("a send caused by %s@%d failed: %s", tp, offset, error)
                    failed_at = offset
                    break
            commit_to = offset + 1
        if failed_at is not None:
            consumer.seek(tp, failed_at)
        return commit_to, failed_at is None
