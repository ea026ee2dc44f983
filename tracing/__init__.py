"""OpenTelemetry for choreokit services: one trace across every hop (see docs/tracing.md)."""

__all__: list[str] = []
