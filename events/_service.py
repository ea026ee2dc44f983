"""A service: handlers declared by event class, publishing, and the FastStream runtime."""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from itertools import chain
from types import TracebackType
from typing import Any, Self, TypeVar

from aiokafka import AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from faststream.kafka import KafkaBroker
from faststream.kafka.message import KafkaMessage
from faststream.middlewares import AckPolicy

from choreokit.events._batch import BatchProcessor
from choreokit.events._consumer import ConsumerStats, Dispatcher, UnknownTypePolicy
from choreokit.events._context import current_context
from choreokit.events._dead_letter import AUDIT_TOPIC, dead_letter_topic
from choreokit.events._envelope import Envelope
from choreokit.events._errors import ConfigurationError
from choreokit.events._fetch_wait import FetchWait
from choreokit.events._handling import HandlerSpec
from choreokit.events._kafka import (
    broker_options,
    consumer_options,
    ensure_topics,
    start_producer,
    start_transactional_producer,
    stop_quietly,
)
from choreokit.events._middleware import Middleware
from choreokit.events._model import Event
from choreokit.events._publisher import Publisher
from choreokit.events._registry import Registry, default_registry
from choreokit.events._retry import RetryPolicy
from choreokit.events._settings import KafkaSettings, millis
from choreokit.events._transactions import TransactionalBatchProcessor

E = TypeVar("E", bound=Event)
Handler = Callable[..., Awaitable[None]]

logger = logging.getLogger("choreokit.service")
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_REDELIVERY_PAUSE = 1.0
_EVENT_AND_CONTEXT = 2
_NOT_IN_AN_ID = re.compile(r"[^A-Za-z0-9._-]+")


class Service:
    """A deployable unit: handles some event types and publishes others.

    Example::

        inventory = Service("inventory")

        @inventory.handler(OrderPlacedV2)
        async def reserve(event: OrderPlacedV2, ctx: HandlerContext) -> None:
            await ctx.publish(StockReserved(order_id=event.order_id))

        async with inventory:
            await stop_requested.wait()

    The service is one consumer group (its name) over the topics of the types it
    handles. Records are committed only once handled and every event published
    in consequence is acknowledged; failures are retried per ``retry`` and then
    sent, bytes and headers intact, to ``<topic>.dlq``.

    Args:
        name: Service name: the consumer group, the client id, and the default
            CloudEvents source ``/services/<name>``.
        source: CloudEvents ``source`` of the events it publishes.
        registry: Where its event types are declared.
        settings: Kafka settings; read from the environment at start if omitted.
        retry: How failing handlers are retried before dead-lettering.
        publishes: Event classes it may publish; when given, publishing anything
            else is an error, and their topics are created at start.
        unknown_types: What to do with records of types no registry knows.
        concurrent_partitions: Handle the partitions of one batch side by side
            (order is always kept within a partition).
    """

    def __init__(
        self,
        name: str,
        *,
        source: str | None = None,
        registry: Registry = default_registry,
        settings: KafkaSettings | None = None,
        retry: RetryPolicy | None = None,
        publishes: Iterable[type[Event]] = (),
        unknown_types: UnknownTypePolicy = UnknownTypePolicy.DEAD_LETTER,
        concurrent_partitions: bool = True,
    ) -> None:
        if not _NAME.match(name):
            raise ConfigurationError(
                f"service name {name!r} must be 1-63 lowercase letters, digits, '.', '_' or '-'"
            )
        self.name = name
        self.source = source or f"/services/{name}"
        self.registry = registry
        self.stats = ConsumerStats()
        self._settings = settings
        self._retry = retry or RetryPolicy()
        self._publishes = frozenset(publishes)
        self._unknown_types = unknown_types
        self._concurrent = concurrent_partitions
        self._routes: dict[str, dict[str, HandlerSpec]] = {}
        self._middlewares: list[Middleware] = []
        self._producer: AIOKafkaProducer | None = None
        self._publisher: Publisher | None = None
        self._broker: KafkaBroker | None = None
        self._batch_lock = asyncio.Lock()
        self._batch: BatchProcessor | TransactionalBatchProcessor | None = None
        self._txn_producer: AIOKafkaProducer | None = None
        self._consumer: Callable[[], Any] = lambda: None
        self._failure: BaseException | None = None
        self._failed = asyncio.Event()

    # -- declaration -----------------------------------------------------------------------

    def handler(
        self,
        model: type[E],
        *,
        name: str | None = None,
        on_dead_letter: Callable[[E, BaseException], Event | None] | None = None,
    ) -> Callable[[Callable[..., Awaitable[None]]], Callable[..., Awaitable[None]]]:
        """Declare the handler of ``model``'s type; older versions arrive upcast to ``model``.

        The handler takes the event, or the event and a :class:`HandlerContext`.
        Its ``name`` (default: the function's name) is part of the ids of the
        events it publishes, so keep it stable across releases.

        ``on_dead_letter`` makes a dead-lettered step a failure of its flow: when
        the handler gives up on an event (a permanent error, retries exhausted, a
        :class:`KeyConflictError`), it is called with the event and the error
        and returns the failure event the saga declares for this step (e.g.
        ``PaymentDeclined`` for a ``StockReserved`` that cannot be charged), or
        ``None``. That event is published in the flow, caused by the failed one,
        with an id derived from it (a redelivery publishes the same id), so the
        services downstream compensate as for any failure and no step is left
        holding resources. Records that cannot even be decoded have no event to
        build from and are only dead-lettered.
        """
        info = model.event_info()
        if model.__event_registry__ is not self.registry:
            raise ConfigurationError(f"{model.__qualname__} belongs to another registry")

        def register(fn: Handler) -> Handler:
            if not inspect.iscoroutinefunction(fn):
                raise ConfigurationError(f"handler {fn.__qualname__} must be 'async def'")
            route = self._routes.setdefault(info.topic, {})
            if info.type in route:
                raise ConfigurationError(
                    f"{self.name} already has a handler for {info.type} "
                    f"({route[info.type].name}); one handler per type and service"
                )
            positional = [
                p
                for p in inspect.signature(fn).parameters.values()
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
            ]
            route[info.type] = HandlerSpec(
                name=name or fn.__name__,
                model=model,
                fn=fn,
                takes_context=len(positional) >= _EVENT_AND_CONTEXT,
                on_dead_letter=on_dead_letter,
            )
            return fn

        return register

    def use(self, *middlewares: Middleware) -> None:
        """Add middlewares; the first added is the outermost. Call before :meth:`start`."""
        if self._publisher is not None:
            raise ConfigurationError("add middlewares before the service starts")
        self._middlewares.extend(middlewares)

    @property
    def topics(self) -> tuple[str, ...]:
        """The topics this service consumes."""
        return tuple(sorted(self._routes))

    @property
    def handlers(self) -> tuple[HandlerSpec, ...]:
        """Every declared handler."""
        return tuple(spec for route in self._routes.values() for spec in route.values())

    @property
    def settings(self) -> KafkaSettings | None:
        """The Kafka settings given (``None``: read from the environment at start)."""
        return self._settings

    @property
    def publishes(self) -> frozenset[type[Event]]:
        """The event classes declared in ``publishes=`` (empty: not declared)."""
        return self._publishes

    # -- publishing ------------------------------------------------------------------------

    async def publish(
        self,
        event: Event,
        *,
        correlation_id: str | None = None,
        causation_id: str | None = None,
    ) -> Envelope:
        """Publish ``event``.

        Inside a handler it becomes a consequence of the handled event (same
        flow, that event as its cause) and is sent when the handler returns.
        Elsewhere it is sent at once and awaited; it starts a new flow unless
        ``correlation_id`` names one.
        """
        context = current_context.get()
        if context is not None and correlation_id is None and causation_id is None:
            return await context.publish(event)
        return await self._require_publisher().publish(
            event, correlation_id=correlation_id, causation_id=causation_id
        )

    @property
    def publisher(self) -> Publisher:
        """The running service's publisher (for tools that send prepared records)."""
        return self._require_publisher()

    def _require_publisher(self) -> Publisher:
        if self._publisher is None:
            raise ConfigurationError(f"service {self.name} is not started; start it first")
        return self._publisher

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, create missing topics, and start consuming."""
        if self._publisher is not None:
            return
        settings = self._settings = self._settings or KafkaSettings()
        for spec in self.handlers:
            info = spec.model.event_info()
            self.registry.check_upcast_path(info.type, info.version)
        topics = self.topics
        published = {model.event_info().topic for model in self._publishes}
        await ensure_topics(
            settings,
            [
                *topics,
                *(dead_letter_topic(t) for t in topics),
                *published,
                *([AUDIT_TOPIC] if topics else []),
            ],
        )
        self._producer = await start_producer(settings, client_id=self.name)
        self._bind(self._producer)
        self.stats.last_progress = time.monotonic()
        if topics:
            try:
                await self._start_consumer(settings)
            except BaseException:
                await self.stop()
                raise
        logger.info("service %s started; consuming %s", self.name, ", ".join(topics) or "nothing")

    def _bind(self, producer: AIOKafkaProducer) -> Publisher:
        """Publish through ``producer`` from now on (the runtime's, or the test kit's)."""
        self._publisher = Publisher(
            producer,
            source=self.source,
            middlewares=self._middlewares,
            allowed=self._publishes or None,
            renew=self._renew_producer if producer is self._producer else None,
        )
        return self._publisher

    async def _renew_producer(self) -> AIOKafkaProducer:
        """A new producer for the publisher, whose old one lost its sequence numbers."""
        settings = self._settings or KafkaSettings()
        self._producer = await start_producer(settings, client_id=self.name)
        return self._producer

    def _processor(
        self, *, retry: RetryPolicy | None = None, settings: KafkaSettings | None = None
    ) -> BatchProcessor:
        """The consuming core over the bound publisher: what the runtime and the test kit run."""
        settings = settings or self._settings or KafkaSettings()
        return BatchProcessor(
            self._dispatcher(self._require_publisher(), retry=retry),
            concurrent_partitions=self._concurrent,
            poll_budget=settings.max_poll_interval.total_seconds() / 2,
            max_parked=settings.max_parked,
        )

    def _dispatcher(self, publisher: Publisher, *, retry: RetryPolicy | None = None) -> Dispatcher:
        return Dispatcher(
            routes=self._routes,
            registry=self.registry,
            group=self.name,
            publisher=publisher,
            middlewares=self._middlewares,
            retry=retry or self._retry,
            unknown_types=self._unknown_types,
            stats=self.stats,
        )

    def transactional_id(self, settings: KafkaSettings | None = None) -> str:
        """The transactional id this instance runs with when transactions are on.

        ``CHOREO_KAFKA_TRANSACTIONAL_ID``, else ``<service>-<host name>``.
        """
        settings = settings or self._settings or KafkaSettings()
        if settings.transactional_id is not None:
            return settings.transactional_id
        host = _NOT_IN_AN_ID.sub("-", socket.gethostname()).strip("-") or "host"
        return f"{self.name}-{host}"[:200]

    async def _transactional_processor(
        self, settings: KafkaSettings
    ) -> TransactionalBatchProcessor:
        """The consuming core when transactions are on: its own producer and publisher."""
        producer = await start_transactional_producer(
            settings, client_id=self.name, transactional_id=self.transactional_id(settings)
        )
        self._txn_producer = producer
        publisher = Publisher(
            producer,
            source=self.source,
            middlewares=self._middlewares,
            allowed=self._publishes or None,
        )
        # The batch's transaction must end well before the broker would abort it.
        budget = min(
            settings.max_poll_interval.total_seconds(),
            settings.transaction_timeout.total_seconds(),
        )
        return TransactionalBatchProcessor(
            self._dispatcher(publisher),
            producer,
            group=self.name,
            concurrent_partitions=self._concurrent,
            poll_budget=budget / 2,
            on_fenced=self._fail,
        )

    def _unbind(self) -> None:
        self._publisher = None

    async def _start_consumer(self, settings: KafkaSettings) -> None:
        processor: BatchProcessor | TransactionalBatchProcessor
        if settings.transactions:
            processor = await self._transactional_processor(settings)
        else:
            processor = self._processor(settings=settings)
        self._batch = processor
        broker = KafkaBroker(
            client_id=self.name,
            consumer_only=True,
            apply_types=False,
            logger=_faststream_logger(),
            log_level=logging.DEBUG,
            graceful_timeout=settings.request_timeout.total_seconds(),
            **broker_options(settings),
        )
        options = consumer_options(settings)
        subscriber = broker.subscriber(
            *self.topics,
            group_id=self.name,
            batch=True,
            max_records=settings.max_batch,
            batch_timeout_ms=millis(settings.timing("poll_timeout")),
            ack_policy=AckPolicy.MANUAL,
            listener=_FinishBatchOnRevoke(self._batch_lock, processor, lambda: subscriber.consumer),
            parser=_parse_batch,
            decoder=_raw_batch,
            **options,
        )
        self._consumer = lambda: subscriber.consumer

        poll_ms = millis(settings.timing("poll_timeout"))
        fetch_wait = FetchWait(settings)

        async def poll(consumer: Any) -> tuple[ConsumerRecord[bytes, bytes], ...]:
            # FastStream's batch poll sleeps once more after an empty poll, adding up to a
            # poll timeout of latency; getmany alone returns as soon as records arrive, so the
            # timeout can be long (few idle wake-ups) without delaying anything.
            batches = await consumer.getmany(timeout_ms=poll_ms, max_records=settings.max_batch)
            records = tuple(chain.from_iterable(batches.values()))
            fetch_wait.polled(consumer, len(records))  # before the fetcher sends its next fetch
            return records

        subscriber.get_msg = poll

        async def on_batch(records: tuple[ConsumerRecord[bytes, bytes], ...]) -> None:
            consumer = subscriber.consumer
            assert consumer is not None
            async with self._batch_lock:
                complete = await processor.process(records, consumer)
            self.lag_by_partition()  # the lag metric, as of this batch
            if not complete:
                await asyncio.sleep(_REDELIVERY_PAUSE)

        subscriber(on_batch)
        self._broker = broker
        await broker.start()

    # -- liveness --------------------------------------------------------------------------

    def lag(self) -> int:
        """Records on this member's partitions not done yet (0 before anything was fetched)."""
        return self._batch.lag() if self._batch is not None else 0

    def lag_by_partition(self) -> dict[tuple[str, int], int]:
        """:meth:`lag` per ``(topic, partition)``, as of now; also kept in ``stats.lag``.

        Counted from each partition's watermark (the later of the committed and the
        held-back offset when nothing is in hand), so records in retry lanes count.
        """
        if self._batch is not None:
            self.stats.lag.update(self._batch.lag_by_partition())
        return dict(self.stats.lag)

    def parked(self) -> int:
        """Records waiting in retry lanes (a retry's backoff, or a slow handler)."""
        return self._batch.parked() if self._batch is not None else 0

    def healthy(self) -> bool:
        """Whether the service is started and its consumer makes progress.

        Not healthy: not started, or records are waiting (lag) and none was
        finished for ``KafkaSettings.stall_after`` (a handler hanging on a
        dependency, a partition paused for good). ``/healthz`` answers with it.
        """
        if self._publisher is None:
            return False
        if not self.topics:
            return True
        if isinstance(self._batch, TransactionalBatchProcessor) and self._batch.fenced:
            return False
        settings = self._settings or KafkaSettings()
        idle = time.monotonic() - self.stats.last_progress
        return self.lag() == 0 or idle < settings.stall_after.total_seconds()

    @property
    def failure(self) -> BaseException | None:
        """Why this service cannot go on (``None`` while it can): see :meth:`wait_failed`."""
        return self._failure

    async def wait_failed(self) -> BaseException:
        """Wait until the service cannot go on, and return why.

        Today that is a transactional producer fenced by another instance of its
        transactional id (or a transaction the broker aborted for good): the service
        handles nothing more, and its process should end so that its partitions go to
        the members that can (``ServiceApp.run`` raises :class:`ServiceFailedError`).
        """
        await self._failed.wait()
        assert self._failure is not None
        return self._failure

    def _fail(self, cause: BaseException) -> None:
        if self._failure is None:
            self._failure = cause
            self._failed.set()

    def health(self) -> dict[str, Any]:
        """What :meth:`healthy` is based on, for ``/healthz`` bodies and logs."""
        return {
            "service": self.name,
            "healthy": self.healthy(),
            "lag": self.lag(),
            "parked": self.parked(),
            "seconds_since_progress": round(time.monotonic() - self.stats.last_progress, 3),
        }

    async def stop(self) -> None:
        """Finish the batch in hand, commit it, leave the group, flush and disconnect."""
        broker, producer, processor = self._broker, self._producer, self._batch
        transactional = self._txn_producer
        if self._publisher is not None:
            current = await self._publisher.detach()  # a renewed producer, if it was replaced
            producer = current if producer is not None else None
        self._broker = self._producer = self._publisher = self._txn_producer = None
        self._batch = None
        if broker is not None and processor is not None:
            consumer = self._consumer()
            if consumer is not None:
                async with self._batch_lock:
                    await processor.close(consumer)
        if broker is not None:
            await broker.stop()
        if transactional is not None:
            await stop_quietly(transactional)
        if producer is not None:
            await producer.stop()

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set, then stop cleanly."""
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


class _FinishBatchOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    """Before partitions move away: finish the batch in hand, stop their lanes, commit.

    The retry lanes of the revoked partitions are stopped; their records were not
    committed, so the next owner reads them again.
    """

    def __init__(
        self,
        lock: asyncio.Lock,
        processor: BatchProcessor | TransactionalBatchProcessor,
        consumer: Callable[[], Any],
    ) -> None:
        self._lock = lock
        self._processor = processor
        self._consumer = consumer

    async def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        async with self._lock:
            logger.info("partitions revoked: %s", _names(revoked))
            consumer = self._consumer()
            if consumer is not None and revoked:
                await self._processor.revoke(revoked, consumer)

    async def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        logger.info("partitions assigned: %s", _names(assigned))


def _names(partitions: Sequence[TopicPartition]) -> str:
    return ", ".join(f"{p.topic}[{p.partition}]" for p in sorted(partitions)) or "none"


async def _parse_batch(records: tuple[ConsumerRecord[bytes, bytes], ...]) -> KafkaMessage:
    # FastStream's own parser decodes every header as UTF-8 and would fail the whole
    # batch on one hostile header; ours leaves the bytes to the codec.
    return KafkaMessage(
        raw_message=records, body=records, consumer=_NO_CONSUMER, message_id=_batch_id(records)
    )


async def _raw_batch(message: KafkaMessage) -> Any:
    return message.raw_message


def _batch_id(records: tuple[ConsumerRecord[bytes, bytes], ...]) -> str:
    if not records:
        return "empty"
    return f"{records[0].topic}[{records[0].partition}]@{records[0].offset}+{len(records)}"


class _NoConsumer:
    async def commit(self) -> None:
        """Offsets are committed by the batch processor, never through FastStream."""

    def seek(self, partition: TopicPartition, offset: int) -> None:
        """Rewinds are done by the batch processor."""


_NO_CONSUMER = _NoConsumer()


class _QuietSetupWarnings(logging.Filter):
    """Drop FastStream's warnings about topic creation: the service creates topics itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Make sure the topics exist" not in record.getMessage()


def _faststream_logger() -> logging.Logger:
    log = logging.getLogger("choreokit.faststream")
    if not any(isinstance(f, _QuietSetupWarnings) for f in log.filters):
        log.addFilter(_QuietSetupWarnings())
    return log
