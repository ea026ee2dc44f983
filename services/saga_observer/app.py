"""The deployable observer: ``choreo run saga-observer`` builds it with :func:`create`."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from choreokit.events import (
    ApprovalEscalated,
    ApprovalGranted,
    ApprovalRejected,
    KafkaSettings,
    Service,
    default_registry,
    needs_extra,
)
from choreokit.events.dlq import DeadLetterStore, ReplayResult

with needs_extra("observer", "the saga observer"):
    from sqlalchemy.ext.asyncio import AsyncEngine

    from choreokit.services.runtime.access import AccessPolicy
    from choreokit.services.runtime.app import Runtime
    from choreokit.services.runtime.http import HttpServer
    from choreokit.services.runtime.limits import server_config
    from choreokit.services.saga_observer.access import access_policy
    from choreokit.services.saga_observer.api import build_api
    from choreokit.services.saga_observer.approvals import Decided, DecisionRequest
    from choreokit.services.saga_observer.audit import AuditLog
    from choreokit.services.saga_observer.catalog import SagaCatalog, SpecFiles, load_catalog
    from choreokit.services.saga_observer.events import LIFECYCLE_EVENTS, LIFECYCLE_TYPES
    from choreokit.services.saga_observer.ingest import Ingest
    from choreokit.services.saga_observer.lifecycle import LifecycleRelay, Transition
    from choreokit.services.saga_observer.metrics import ObserverMetrics
    from choreokit.services.saga_observer.queries import Queries
    from choreokit.services.saga_observer.records import micros
    from choreokit.services.saga_observer.saga_map import SagaMaps
    from choreokit.services.saga_observer.settings import ObserverSettings
    from choreokit.services.saga_observer.store import Store, open_engines
    from choreokit.services.saga_observer.sweeper import Sweeper

logger = logging.getLogger("choreokit.observer")

SETTINGS = (ObserverSettings,)
"""The settings classes the observer reads (``choreo`` tools list their variables)."""


class _KafkaReplayer:
    """Replays dead letters through :class:`DeadLetterStore`, one store per request."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self._kafka = kafka

    async def replay(
        self,
        dead_letter_id: str,
        *,
        data: bytes | None,
        to_topic: str | None,
        force: bool,
        operator: str,
    ) -> ReplayResult:
        async with DeadLetterStore(self._kafka, operator=operator) as store:
            letter = await store.get(dead_letter_id)
            [result] = await store.replay(
                [letter], data=data, registry=default_registry, to_topic=to_topic, force=force
            )
        return result


class _Desk:
    """Decisions at checkpoints: recorded by the store, then published by the woken relay."""

    def __init__(self, store: Store, clock: Callable[[], int], wake: Callable[[], None]) -> None:
        self._store = store
        self._clock = clock
        self._wake = wake

    async def decide(self, request: DecisionRequest) -> Decided:
        made = await self._store.decide(request, self._clock())
        if made.recorded:
            self._wake()
        return made


APPROVALS = (ApprovalGranted, ApprovalRejected, ApprovalEscalated)
"""What the observer publishes for checkpoints (operators' decisions, deadline fallbacks)."""


def create(runtime: Runtime) -> ObserverApp:
    """Build the observer from the runtime and the environment (``CHOREO_OBSERVER_*``)."""
    return ObserverApp(runtime, ObserverSettings())


def now_us() -> int:
    """Microseconds since the epoch, now."""
    return micros(datetime.now(UTC))


@dataclass
class _InstanceState:
    group: str
    client_id: str
    ingest: Ingest | None = None
    state: str = "starting"
    bound: list[str] = field(default_factory=list)

    def consumer_state(self) -> str:
        return self.state

    def assignment(self) -> list[str]:
        if self.ingest is None:
            return []
        return [f"{tp.topic}[{tp.partition}]" for tp in self.ingest.assignment]

    def lag(self) -> int:
        return self.ingest.lag() if self.ingest else 0


class ObserverApp:
    """The saga observer: ingest, deadline sweeps, lifecycle relay and the HTTP server.

    Args:
        runtime: Name, Kafka settings, middlewares and data directory.
        settings: The observer's settings.
        catalog: The saga specs; loaded from the entry points and
            ``settings.specs`` when omitted (then a changed spec file is reloaded
            on the next sweep, without a restart).
        clock: Microseconds since the epoch, now.
        access: Who may read and act; built from ``settings`` and the profile when omitted.
    """

    serves_http = True
    """It answers ``/healthz`` and ``/metrics`` itself (``choreo run`` adds no status port)."""

    def __init__(
        self,
        runtime: Runtime,
        settings: ObserverSettings,
        *,
        catalog: SagaCatalog | None = None,
        clock: Callable[[], int] = now_us,
        access: AccessPolicy | None = None,
    ) -> None:
        self.runtime = runtime
        self.settings = settings
        self._catalog = catalog
        self._access = access
        self._clock = clock
        self.group = settings.group or runtime.name
        self.client_id = f"{runtime.name}-{socket.gethostname()}-{os.getpid()}"
        self.metrics = ObserverMetrics(runtime.prometheus_registry())
        self.ready = asyncio.Event()
        self.port: int | None = None
        self.publisher = runtime.prepare(
            Service(runtime.name, publishes=(*LIFECYCLE_EVENTS, *APPROVALS), settings=runtime.kafka)
        )
        """Publishes the lifecycle events (``saga.*``); nothing runs until :meth:`run`."""

    @property
    def services(self) -> tuple[Service, ...]:
        """The app's event-layer services (``choreo schemas export`` lists what they send)."""
        return (self.publisher,)

    @property
    def database_url(self) -> str:
        """The database in use: ``CHOREO_OBSERVER_DB``, else a SQLite file in the data dir."""
        return self.settings.db or self.runtime.sqlite_url(self.runtime.name)

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set, then stop every part and return."""
        settings = self.settings
        # The declared models tell which payload fields are sensitive (redacted at ingest).
        from choreokit.services.runtime.discovery import load_event_modules

        load_event_modules()
        catalog = self._catalog or load_catalog(settings.specs, timeout=settings.timeout)
        if len(catalog):
            logger.info(
                "judging by the sagas %s",
                ", ".join(f"{s.name} (timeout {s.timeout})" for s in catalog),
            )
        else:
            logger.warning(
                "no saga specs (entry points 'choreokit.sagas', CHOREO_OBSERVER_SPECS): every "
                "flow is recorded and shown, none is judged"
            )
        access = self._access or access_policy(
            settings, profile=self.runtime.kafka.profile, data_dir=self.runtime.data_dir
        )
        writer, reader = open_engines(self.database_url)
        try:
            store = Store(writer, catalog, group=self.group)
            audit = AuditLog(writer, reader, self._clock)
            before, after = await store.migrate()
            if before != after:
                logger.info("observer database migrated from version %d to %d", before, after)
            publisher = self.publisher
            await publisher.start()
            try:
                await self._serve(stop, store, reader, catalog, publisher, access, audit)
            finally:
                await publisher.stop()
        finally:
            await writer.dispose()
            if reader is not writer:
                await reader.dispose()

    async def _serve(  # noqa: PLR0917 - the parts run() opened, passed on once
        self,
        stop: asyncio.Event,
        store: Store,
        reader: AsyncEngine,
        catalog: SagaCatalog,
        publisher: Service,
        access: AccessPolicy,
        audit: AuditLog,
    ) -> None:
        settings, metrics = self.settings, self.metrics
        relay = LifecycleRelay(
            store,
            publisher.publisher,
            owner=self.client_id,
            clock=self._clock,
            on_published=lambda t: metrics.published.labels(t).inc(),
        )

        def transitions(changes: Sequence[Transition]) -> None:
            if changes:
                relay.wake()

        ingest = Ingest(
            kafka=self.runtime.kafka,
            settings=settings,
            group=self.group,
            client_id=self.client_id,
            store=store,
            metrics=metrics,
            clock=self._clock,
            lifecycle_types=LIFECYCLE_TYPES,
            on_transitions=transitions,
        )
        sweeper = Sweeper(
            store,
            clock=self._clock,
            interval=settings.sweep_interval,
            metrics=metrics,
            on_transitions=transitions,
            spec_files=(
                None
                if self._catalog is not None or not settings.specs
                else SpecFiles(catalog, settings.specs, timeout=settings.timeout)
            ),
            caught_up=ingest.caught_up,
        )
        instance = _InstanceState(group=self.group, client_id=self.client_id, ingest=ingest)
        queries = Queries(reader, catalog, group=self.group, jaeger_url=settings.jaeger_url)
        api = build_api(
            queries=queries,
            catalog=catalog,
            metrics=metrics,
            instance=instance,
            max_page_size=settings.max_page_size,
            access=access,
            audit=audit,
            replayer=_KafkaReplayer(self.runtime.kafka),
            maps=SagaMaps(reader),
            clock=self._clock,
            desk=_Desk(store, self._clock, relay.wake),
        )
        server = HttpServer(
            server_config(api, host=settings.host, port=settings.port),
            cannot_bind="choose another with CHOREO_OBSERVER_HOST / CHOREO_OBSERVER_PORT",
        )
        halt = asyncio.Event()
        parts: dict[str, Coroutine[Any, Any, None]] = {
            "ingest": ingest.run(halt),
            "sweeper": sweeper.run(halt),
            "relay": relay.run(halt),
            "http": server.serve(),
        }
        tasks: dict[asyncio.Future[Any], str] = {
            asyncio.ensure_future(coro): name for name, coro in parts.items()
        }
        watcher = asyncio.ensure_future(self._watch_start(ingest, server, instance))
        stopping: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
        failure: BaseException | None = None
        try:
            done, _ = await asyncio.wait({*tasks, stopping}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not stopping and task.exception() is not None:
                    failure = task.exception()
                    logger.error("observer %s failed: %s", tasks[task], failure)
                elif task is not stopping:
                    logger.error("observer %s stopped unexpectedly", tasks[task])
        finally:
            instance.state = "stopped"
            halt.set()
            server.should_exit = True
            watcher.cancel()
            stopping.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            for task, result in zip(tasks, results, strict=True):
                if isinstance(result, Exception) and result is not failure:
                    logger.error("observer %s failed while stopping: %s", tasks[task], result)
        if failure is not None:
            raise failure

    async def _watch_start(
        self, ingest: Ingest, server: HttpServer, instance: _InstanceState
    ) -> None:
        await ingest.started.wait()
        await server.listening.wait()
        for listener in server.servers:
            for sock in listener.sockets:
                host, port = sock.getsockname()[:2]
                self.port = int(port)
                instance.bound.append(f"http://{host}:{port}")
        instance.state = "running"
        logger.info("saga observer on %s (UI at /, API at /api/docs)", ", ".join(instance.bound))
        self.runtime.mark_ready()
        self.ready.set()
