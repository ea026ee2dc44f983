"""OpenTelemetry for choreokit services: one trace across every hop (see docs/tracing.md).

``configure(service_name)`` reads the standard ``OTEL_*`` environment and
returns a :class:`Telemetry` whose middlewares a service uses; the runtime
(``choreo run``) does this for every service it starts.
"""

from tracing._setup import Telemetry, configure

__all__ = ["Telemetry", "configure"]
