"""OpenTelemetry for choreokit services: one trace across every hop (see docs/tracing.md).

``configure(service_name)`` reads the standard ``OTEL_*`` environment and
returns a :class:`Telemetry` whose middlewares a service uses; the runtime
(``choreo run``) does this for every service it starts, and
``configure_logging`` gives its log lines the trace and flow ids::

    telemetry = tracing.configure("inventory")
    service.use(*telemetry.middlewares)
    ...
    telemetry.shutdown()  # flushes the spans still queued

``configure_metrics(service_name)`` gives the event layer's metrics (OpenTelemetry
messaging metrics, also as Prometheus text; see docs/metrics.md).
"""

from choreokit.tracing._logs import JsonFormatter, LogFormat, TraceContextFilter, configure_logging
from choreokit.tracing._metrics import EventMetrics, Metrics, configure_metrics
from choreokit.tracing._middleware import TracingMiddleware
from choreokit.tracing._naming import flow_label
from choreokit.tracing._propagation import KafkaHeaderGetter, KafkaHeaderSetter
from choreokit.tracing._relay import TraceContextRelay
from choreokit.tracing._setup import (
    OtlpProtocol,
    Telemetry,
    TracesExporter,
    TracingSettings,
    configure,
)
from choreokit.tracing._traceparent import format_traceparent, parse_traceparent

__all__ = [
    "EventMetrics",
    "JsonFormatter",
    "KafkaHeaderGetter",
    "KafkaHeaderSetter",
    "LogFormat",
    "Metrics",
    "OtlpProtocol",
    "Telemetry",
    "TraceContextFilter",
    "TraceContextRelay",
    "TracesExporter",
    "TracingMiddleware",
    "TracingSettings",
    "configure",
    "configure_logging",
    "configure_metrics",
    "flow_label",
    "format_traceparent",
    "parse_traceparent",
]
