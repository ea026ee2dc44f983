"""Spans in memory: a tracer provider whose finished spans a test can read."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, Sampler
from opentelemetry.trace import SpanKind

from choreokit.tracing import TracingMiddleware


@dataclass
class CapturedSpans:
    """A tracer provider exporting to memory, and the tracing middleware over it.

    Give :attr:`middleware` to the service under test (``service.use(...)``),
    then read :meth:`finished`.

    Attributes:
        provider: The SDK provider; spans a handler makes with it join the trace.
        exporter: Where finished spans go, synchronously.
        middleware: choreokit's tracing middleware writing to :attr:`provider`.
    """

    provider: TracerProvider
    exporter: InMemorySpanExporter = field(default_factory=InMemorySpanExporter)
    middleware: TracingMiddleware = field(init=False)

    def __post_init__(self) -> None:
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.middleware = TracingMiddleware(self.provider)

    def finished(
        self, *, name: str | None = None, kind: SpanKind | None = None
    ) -> list[ReadableSpan]:
        """Finished spans in the order they ended, optionally only of ``name`` and ``kind``."""
        return [
            span
            for span in self.exporter.get_finished_spans()
            if (name is None or span.name == name) and (kind is None or span.kind is kind)
        ]

    def clear(self) -> None:
        """Forget the spans finished so far."""
        self.exporter.clear()


@contextmanager
def capture_spans(sampler: Sampler = ALWAYS_ON) -> Iterator[CapturedSpans]:
    """Capture spans in memory for the duration of the block; the provider shuts down after.

    Example::

        with capture_spans() as spans:
            service.use(spans.middleware)
            async with ServiceKit(service) as kit:
                await kit.deliver(OrderPlaced(...))
        assert [s.name for s in spans.finished()] == ["send inventory", "process orders"]
    """
    captured = CapturedSpans(TracerProvider(sampler=sampler))
    try:
        yield captured
    finally:
        captured.provider.shutdown()
