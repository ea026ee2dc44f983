"""The gateway as a deployable service: ``choreo run gateway`` builds it through :func:`create`."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from pathlib import Path

from fastapi import FastAPI
from opentelemetry.trace import TracerProvider
from prometheus_client import CollectorRegistry

from choreokit.events import (
    ConfigurationError,
    KafkaSettings,
    Middleware,
    Profile,
    Registry,
    Service,
)
from choreokit.services.gateway._api import build_api
from choreokit.services.gateway._dedup import DedupWindow
from choreokit.services.gateway._forwarding import Forwarder
from choreokit.services.gateway._gateway import Gateway
from choreokit.services.gateway._keys import KeyStore, mint_key
from choreokit.services.gateway._link import KafkaLink
from choreokit.services.gateway._metrics import GatewayMetrics
from choreokit.services.gateway._ratelimit import RateLimiter
from choreokit.services.gateway._settings import GatewaySettings
from choreokit.services.gateway._tracecontext import TraceBridge
from choreokit.services.runtime.access import FailedAuthLimit
from choreokit.services.runtime.app import Runtime
from choreokit.services.runtime.discovery import declared_sagas
from choreokit.services.runtime.http import HttpServer
from choreokit.services.runtime.limits import ConnectionLimits, server_config

logger = logging.getLogger("choreokit.gateway")


class GatewayApp:
    """The HTTP gateway: an API in front of a publishing :class:`events.Service`.

    Args:
        settings: How to listen and what to accept.
        kafka: Where to publish.
        name: Service name: the producer's client id.
        registry: The declared events it accepts (default: every discovered one).
        keys: The API keys (default: loaded from ``settings`` when it runs).
        middlewares: Publish middlewares of the runtime (tracing).
        tracer_provider: Where its spans go (default: the global provider).
        metrics: The Prometheus registry its metrics join (default: a new one).
        dev_key_file: With no key configured, mint a development key and write its
            token here (``choreo run`` passes one only with ``CHOREO_PROFILE=local``);
            ``None``: no key configured is an error.
        on_ready: Called once the gateway listens and has reached Kafka.
        flow_enders: Types that end or compensate a flow, which untrusted keys may
            publish only in flows of their own (default: the success and failure
            ends and the compensations of the sagas in the ``choreokit.sagas``
            entry points).
    """

    serves_http = True
    """It answers ``/healthz`` and ``/metrics`` itself (``choreo run`` adds no status port)."""

    def __init__(
        self,
        settings: GatewaySettings,
        *,
        kafka: KafkaSettings,
        name: str = "gateway",
        registry: Registry | None = None,
        keys: KeyStore | None = None,
        middlewares: Sequence[Middleware] = (),
        tracer_provider: TracerProvider | None = None,
        metrics: CollectorRegistry | None = None,
        dev_key_file: Path | None = None,
        on_ready: Callable[[], None] | None = None,
        flow_enders: Iterable[str] | None = None,
    ) -> None:
        self.settings = settings
        self._kafka = kafka
        self._name = name
        self._registry = registry
        self._keys = keys
        self._middlewares = tuple(middlewares)
        self._tracer_provider = tracer_provider
        self._metrics_registry = metrics
        self._dev_key_file = dev_key_file
        self._on_ready = on_ready
        self._flow_ender_types = None if flow_enders is None else frozenset(flow_enders)
        self._address: tuple[str, int] | None = None
        self.listening = asyncio.Event()
        """Set once the socket is bound and the server accepts connections."""

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:8081`` (known once :attr:`listening` is set).

        Raises:
            ConfigurationError: The server is not listening yet.
        """
        if self._address is None:
            raise ConfigurationError("the gateway is not listening yet; await .listening first")
        host, port = self._address
        return f"http://{host}:{port}"

    def build(self) -> tuple[FastAPI, KafkaLink]:
        """Assemble the gateway: the HTTP API and its (not yet started) link to Kafka.

        Raises:
            ConfigurationError: No API keys are configured, or they are invalid.
        """
        registry = self._registry
        if registry is None:
            from choreokit.events import default_registry
            from choreokit.services.runtime.discovery import load_event_modules

            load_event_modules()
            registry = default_registry
        keys = self._keys or self._load_keys()
        metrics = GatewayMetrics(self._metrics_registry or CollectorRegistry())
        service = Service(
            self._name,
            source=f"/services/{self._name}",
            registry=registry,
            settings=self._kafka,
            publishes=list(registry),
        )
        service.use(*self._middlewares)
        link = KafkaLink(
            service,
            self._kafka,
            probe_interval=self.settings.probe_interval,
            probe_timeout=max(self.settings.publish_timeout, timedelta(seconds=1)),
            on_change=lambda up: metrics.kafka_up.set(1 if up else 0),
        )
        forwarder = Forwarder(
            link,
            DedupWindow(self.settings.dedup_window, self.settings.dedup_capacity),
            TraceBridge(self._tracer_provider),
            timeout=self.settings.publish_timeout,
            retry_after=self.settings.probe_interval,
        )
        gateway = Gateway(
            settings=self.settings,
            keys=keys,
            registry=registry,
            link=link,
            forwarder=forwarder,
            limiter=RateLimiter(),
            metrics=metrics,
            failed_auth=FailedAuthLimit(
                failures=self.settings.auth_failures,
                window=self.settings.auth_failure_window.total_seconds(),
            ),
            flow_enders=self._flow_enders(),
        )
        logger.info(
            "gateway accepts %d event versions of %d types for %d keys",
            len(registry),
            len(registry.types()),
            len(keys),
        )
        return build_api(gateway), link

    def _flow_enders(self) -> frozenset[str]:
        if self._flow_ender_types is not None:
            return self._flow_ender_types
        # The saga specs are the event layer's declarations; the gateway reads only their ends.
        specs = declared_sagas()
        return frozenset(
            t
            for spec in specs
            for t in (*spec.success, *spec.failure, *spec.compensations.values())
        )

    def _load_keys(self) -> KeyStore:
        settings = self.settings
        if settings.keys_file is None and not settings.keys and self._dev_key_file is not None:
            return self._mint_dev_key(self._dev_key_file)
        return KeyStore.load(file=settings.keys_file, inline=settings.keys)

    @staticmethod
    def _mint_dev_key(path: Path) -> KeyStore:
        minted = mint_key("dev", types=("*",))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as out:
            out.write(minted.token + "\n")
        logger.warning(
            "no API keys configured: minted a development key 'dev' (any type but the "
            "toolkit's own report types, untrusted) for this run; its token is in %s. "
            "Configure CHOREO_GATEWAY_KEYS_FILE for anything "
            "else: with CHOREO_PROFILE=production the gateway refuses to start without keys",
            path,
        )
        return KeyStore([minted.entry])

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set, then finish open requests and disconnect.

        Raises:
            ConfigurationError: The keys are missing or the port cannot be bound.
        """
        api, link = self.build()
        sock = self._bind()
        config = server_config(
            api,
            host=self.settings.host,
            port=self.settings.port,
            limits=ConnectionLimits(
                header_timeout=self.settings.header_timeout.total_seconds(),
                body_timeout=self.settings.body_timeout.total_seconds(),
                max_connections=self.settings.max_connections,
            ),
            log_config=None,
            access_log=False,
            lifespan="off",
            server_header=False,
            proxy_headers=False,
            timeout_graceful_shutdown=int(self.settings.publish_timeout.total_seconds()) + 1,
        )
        server = HttpServer(config, cannot_bind="set CHOREO_GATEWAY_PORT to a free port")
        link_stop = asyncio.Event()
        link_task = asyncio.create_task(link.run(link_stop), name="gateway-kafka-link")
        serve_task = asyncio.create_task(server.serve(sockets=[sock]), name="gateway-http")
        stop_task = asyncio.create_task(stop.wait())
        listening = asyncio.create_task(server.listening.wait())
        announcer: asyncio.Task[None] | None = None
        try:
            await asyncio.wait({serve_task, listening}, return_when=asyncio.FIRST_COMPLETED)
            listening.cancel()
            if server.started:
                self.listening.set()
                logger.info("gateway listening on %s (POST /events)", self.url)
                announcer = asyncio.create_task(self._announce(link))
            # The link never ends on its own: if it does, it failed, and so does the gateway.
            await asyncio.wait(
                {serve_task, stop_task, link_task}, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            if announcer is not None:
                announcer.cancel()
            server.should_exit = True
            await asyncio.gather(serve_task, return_exceptions=True)
            stop_task.cancel()
            link_stop.set()
            link_error = (await asyncio.gather(link_task, return_exceptions=True))[0]
            sock.close()
            self.listening.clear()
        for error in (serve_task.exception(), link_error):
            if isinstance(error, BaseException):
                raise error

    async def _announce(self, link: KafkaLink) -> None:
        await link.connected.wait()
        if self._on_ready is not None:
            self._on_ready()

    def _bind(self) -> socket.socket:
        host, port = self.settings.host, self.settings.port
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # IPPROTO_TCP explicitly: asyncio turns Nagle's algorithm off only on sockets that
        # say they are TCP, and with it on every answer waits ~40 ms for a delayed ACK.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            raise ConfigurationError(
                f"cannot listen on {host}:{port} ({exc.strerror}); set CHOREO_GATEWAY_PORT "
                "to a free port, or stop what holds it"
            ) from None
        sock.listen(2048)
        sock.setblocking(False)
        bound = sock.getsockname()
        self._address = (host, int(bound[1]))
        return sock


SETTINGS = (GatewaySettings,)
"""The settings this service reads (besides the runtime's)."""

DEV_KEY_FILE = "gateway-dev-key"
"""Where, under the data directory, a development key's token goes (local profile only)."""


def create(runtime: Runtime) -> GatewayApp:
    """Build the gateway from the runtime and ``CHOREO_GATEWAY_*`` (the entry point's factory).

    Keys are loaded when it runs, so building it (e.g. to list services) needs none.
    With ``CHOREO_PROFILE=local`` and no key configured it mints a development key
    (token in ``$CHOREO_DATA_DIR/gateway-dev-key``), so ``choreo dev`` works as is.
    """
    local = runtime.kafka.profile is Profile.LOCAL
    return GatewayApp(
        GatewaySettings(),
        kafka=runtime.kafka,
        name=runtime.name,
        middlewares=runtime.middlewares,
        dev_key_file=runtime.data_dir / DEV_KEY_FILE if local else None,
        on_ready=runtime.mark_ready,
        metrics=runtime.prometheus_registry(),
    )
