"""Tracing set-up from the standard ``OTEL_*`` environment."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Attributes, OTELResourceDetector, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from choreokit.events import ConfigurationError, Middleware
from choreokit.tracing._middleware import TracingMiddleware
from choreokit.tracing._relay import TraceContextRelay
from choreokit.tracing._scrub import ScrubbingProcessor

logger = logging.getLogger("choreokit.tracing")


class OtlpProtocol(StrEnum):
    """How spans travel to the collector (``OTEL_EXPORTER_OTLP_PROTOCOL``)."""

    GRPC = "grpc"
    """OTLP over gRPC, usually port 4317 (the Python SDK's default)."""

    HTTP_PROTOBUF = "http/protobuf"
    """OTLP over HTTP with protobuf bodies, usually port 4318 (path ``/v1/traces``)."""


class TracesExporter(StrEnum):
    """Where spans go (``OTEL_TRACES_EXPORTER``)."""

    OTLP = "otlp"
    """To an OTLP endpoint; tracing is on only when one is configured."""

    CONSOLE = "console"
    """Printed to stdout as JSON (debugging)."""

    NONE = "none"
    """Nowhere: tracing is off, trace context is still passed on."""


class TracingSettings(BaseSettings):
    """The ``OTEL_*`` variables that decide whether and where to trace.

    The rest of the standard environment (``OTEL_SERVICE_NAME``,
    ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER``/``_ARG``,
    ``OTEL_EXPORTER_OTLP_HEADERS``/``_TIMEOUT``/``_INSECURE``/``_COMPRESSION``,
    ``OTEL_BSP_*``) is read by the OpenTelemetry SDK itself.
    """

    model_config = SettingsConfigDict(
        env_prefix="OTEL_", frozen=True, extra="ignore", env_ignore_empty=True
    )

    sdk_disabled: bool = False
    """``OTEL_SDK_DISABLED``: ``true`` turns tracing off."""

    traces_exporter: TracesExporter = TracesExporter.OTLP
    endpoint: str | None = Field(default=None, validation_alias="OTEL_EXPORTER_OTLP_ENDPOINT")
    """Base URL of the collector; ``/v1/traces`` is appended for http/protobuf."""

    traces_endpoint: str | None = Field(
        default=None, validation_alias="OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    )
    """Full URL for traces; wins over ``endpoint``."""

    protocol: OtlpProtocol = Field(
        default=OtlpProtocol.GRPC, validation_alias="OTEL_EXPORTER_OTLP_PROTOCOL"
    )
    traces_protocol: OtlpProtocol | None = Field(
        default=None, validation_alias="OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
    )
    """Protocol for traces; wins over ``protocol``."""

    direct_w3c: bool = Field(default=True, validation_alias="CHOREO_TRACING_DIRECT_W3C")
    """``CHOREO_TRACING_DIRECT_W3C``: with the default propagators (W3C trace context
    and baggage), read and write those headers directly rather than through
    ``propagate.inject``/``extract`` (same headers, less CPU per hop); ``false``
    always goes through the propagator API. Other ``OTEL_PROPAGATORS`` always do."""

    @classmethod
    def from_env(cls) -> TracingSettings:
        """Read the environment.

        Raises:
            ConfigurationError: A variable holds a value the SDK does not accept.
        """
        try:
            return cls()
        except ValidationError as exc:
            problems = "; ".join(
                f"OTEL_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
                for e in exc.errors(include_url=False)
            )
            raise ConfigurationError(
                f"invalid tracing environment ({problems}); see docs/tracing.md"
            ) from None

    @property
    def otlp_protocol(self) -> OtlpProtocol:
        """The protocol spans are exported with."""
        return self.traces_protocol or self.protocol

    @property
    def otlp_endpoint(self) -> str | None:
        """The configured OTLP endpoint, if any."""
        return self.traces_endpoint or self.endpoint

    @property
    def http_traces_url(self) -> str | None:
        """The URL spans are posted to over http/protobuf (the base endpoint + ``/v1/traces``)."""
        if self.traces_endpoint is not None:
            return self.traces_endpoint
        if self.endpoint is not None:
            return f"{self.endpoint.rstrip('/')}/v1/traces"
        return None

    def off_because(self) -> str | None:
        """Why tracing is off, or ``None`` when it is on."""
        if self.sdk_disabled:
            return "OTEL_SDK_DISABLED=true"
        if self.traces_exporter is TracesExporter.NONE:
            return "OTEL_TRACES_EXPORTER=none"
        if self.traces_exporter is TracesExporter.OTLP and self.otlp_endpoint is None:
            return "no OTEL_EXPORTER_OTLP_ENDPOINT"
        return None


@dataclass(frozen=True)
class Telemetry:
    """What tracing gives a service: middlewares to use, and a flush on shutdown.

    Attributes:
        middlewares: Give them to every :class:`events.Service` of the process
            (``Runtime.prepare`` does): the tracing middleware when tracing is on,
            the trace-context relay when it is off.
        tracer_provider: The SDK provider when tracing is on, else ``None``.
    """

    middlewares: tuple[Middleware, ...] = ()
    tracer_provider: TracerProvider | None = None

    @property
    def enabled(self) -> bool:
        """Whether spans are recorded and exported."""
        return self.tracer_provider is not None

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Export every finished span now; return whether that completed in time."""
        if self.tracer_provider is None:
            return True
        return self.tracer_provider.force_flush(timeout_millis)

    def shutdown(self) -> None:
        """Flush the spans still queued and stop the exporter."""
        if self.tracer_provider is not None:
            self.tracer_provider.shutdown()


def configure(
    service_name: str,
    *,
    settings: TracingSettings | None = None,
    set_global: bool = True,
) -> Telemetry:
    """Configure tracing for ``service_name`` from the ``OTEL_*`` environment.

    Tracing is on when an OTLP endpoint is configured (or
    ``OTEL_TRACES_EXPORTER=console``) and ``OTEL_SDK_DISABLED`` is not ``true``.
    Spans then go through a batch span processor to the exporter of
    ``OTEL_EXPORTER_OTLP_PROTOCOL`` (``grpc`` by default, or ``http/protobuf``);
    ``OTEL_SERVICE_NAME`` (default: ``service_name``), ``OTEL_RESOURCE_ATTRIBUTES``
    and ``OTEL_TRACES_SAMPLER``/``_ARG`` are honoured by the SDK. When tracing is
    off, the returned middleware only passes incoming trace context on.

    Args:
        service_name: ``service.name`` unless the environment names one.
        settings: Read from the environment when omitted.
        set_global: Also install the provider as OpenTelemetry's global one, so
            spans that handlers make with ``trace.get_tracer(...)`` join the trace.

    Returns:
        The middlewares to give the service, and ``shutdown()`` to call at exit.

    Raises:
        ConfigurationError: The tracing environment is invalid.
    """
    settings = settings or TracingSettings.from_env()
    reason = settings.off_because()
    if reason is not None:
        logger.info("tracing off (%s); incoming trace context is passed on", reason)
        return Telemetry(middlewares=(TraceContextRelay(),))
    named = OTELResourceDetector().detect().attributes.get(SERVICE_NAME)
    created = Resource.create({SERVICE_NAME: str(named or service_name)})
    resource = _HashedOnce(created.attributes, created.schema_url)
    provider = TracerProvider(resource=resource)  # the sampler comes from OTEL_TRACES_SAMPLER
    provider.add_span_processor(ScrubbingProcessor(BatchSpanProcessor(_exporter(settings))))
    if set_global:
        trace.set_tracer_provider(provider)
    logger.info(
        "tracing on: %s as %s via %s, sampler %s",
        settings.otlp_endpoint or "stdout",
        resource.attributes[SERVICE_NAME],
        settings.otlp_protocol if settings.traces_exporter is TracesExporter.OTLP else "console",
        provider.sampler.get_description(),
    )
    return Telemetry(
        middlewares=(TracingMiddleware(provider, direct_w3c=settings.direct_w3c),),
        tracer_provider=provider,
    )


class _HashedOnce(Resource):
    """A resource that hashes its attributes once.

    The OTLP encoder groups spans by resource, hashing it for every span, and
    ``Resource.__hash__`` serialises every attribute to JSON each time (about 3 %
    of a traced hop's CPU). The attributes are immutable, so the hash can be kept.
    """

    def __init__(self, attributes: Attributes, schema_url: str | None = None) -> None:
        super().__init__(attributes, schema_url)
        self._hash = super().__hash__()

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return super().__eq__(other)


def _exporter(settings: TracingSettings) -> SpanExporter:
    if settings.traces_exporter is TracesExporter.CONSOLE:
        return ConsoleSpanExporter()
    # The exporters read headers, timeout, compression and TLS options from the environment.
    if settings.otlp_protocol is OtlpProtocol.HTTP_PROTOBUF:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter as HttpExporter,
        )

        return HttpExporter(endpoint=settings.http_traces_url)
    from choreokit.tracing._export import GrpcSpanExporter  # grpc loads only when used

    return GrpcSpanExporter(endpoint=settings.otlp_endpoint)
