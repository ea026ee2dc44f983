"""The gateway as a deployable service: ``choreo run gateway`` builds it through :func:`create`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Generator, Sequence
from datetime import timedelta

import uvicorn
from fastapi import FastAPI
from opentelemetry.trace import TracerProvider
from prometheus_client import CollectorRegistry

from events import ConfigurationError, KafkaSettings, Middleware, Registry, Service
from services.gateway._api import build_api
from services.gateway._dedup import DedupWindow
from services.gateway._forwarding import Forwarder
from services.gateway._gateway import Gateway
from services.gateway._keys import KeyStore
from services.gateway._link import KafkaLink
from services.gateway._metrics import GatewayMetrics
from services.gateway._ratelimit import RateLimiter
from services.gateway._settings import GatewaySettings
from services.gateway._tracecontext import TraceBridge
from services.runtime.app import Runtime

logger = logging.getLogger("choreokit.gateway")


class _Server(uvicorn.Server):
    """uvicorn, minus its signal handling (the process running the app owns the signals)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.listening = asyncio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self.listening.set()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


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
    """

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
    ) -> None:
        self.settings = settings
        self._kafka = kafka
        self._name = name
        self._registry = registry
        self._keys = keys
        self._middlewares = tuple(middlewares)
        self._tracer_provider = tracer_provider
        self._metrics_registry = metrics
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
            from events import default_registry
            from services.runtime.discovery import load_event_modules

            load_event_modules()
            registry = default_registry
        keys = self._keys or KeyStore.load(file=self.settings.keys_file, inline=self.settings.keys)
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
        )
        logger.info(
            "gateway accepts %d event versions of %d types for %d keys",
            len(registry),
            len(registry.types()),
            len(keys),
        )
        return build_api(gateway), link

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set, then finish open requests and disconnect.

        Raises:
            ConfigurationError: The keys are missing or the port cannot be bound.
        """
        api, link = self.build()
        sock = self._bind()
        config = uvicorn.Config(
            api,
            log_config=None,
            access_log=False,
            lifespan="off",
            server_header=False,
            proxy_headers=False,
            timeout_graceful_shutdown=int(self.settings.publish_timeout.total_seconds()) + 1,
        )
        server = _Server(config)
        link_stop = asyncio.Event()
        link_task = asyncio.create_task(link.run(link_stop), name="gateway-kafka-link")
        serve_task = asyncio.create_task(server.serve(sockets=[sock]), name="gateway-http")
        stop_task = asyncio.create_task(stop.wait())
        listening = asyncio.create_task(server.listening.wait())
        try:
            await asyncio.wait({serve_task, listening}, return_when=asyncio.FIRST_COMPLETED)
            listening.cancel()
            if server.started:
                self.listening.set()
                logger.info("gateway listening on %s (POST /events)", self.url)
            # The link never ends on its own: if it does, it failed, and so does the gateway.
            await asyncio.wait(
                {serve_task, stop_task, link_task}, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
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


def create(runtime: Runtime) -> GatewayApp:
    """Build the gateway from the runtime and ``CHOREO_GATEWAY_*`` (the entry point's factory).

    Keys are loaded when it runs, so building it (e.g. to list services) needs none.
    """
    return GatewayApp(
        GatewaySettings(),
        kafka=runtime.kafka,
        name=runtime.name,
        middlewares=runtime.middlewares,
    )
