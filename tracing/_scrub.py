"""Spans leave the process without the values of URLs: paths and queries may hold personal data.

HTTP server spans (FastAPI's own telemetry) carry ``url.path`` and ``url.query``, and a
path such as ``/api/flows/{correlation_id}`` holds a flow's id, which may be an e-mail
address. :class:`ScrubbingProcessor` hands the exporter a copy of such a span whose
``url.path`` is the route template (``http.route``) and whose query is gone.
"""

from __future__ import annotations

from typing import Final

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.semconv.attributes.http_attributes import HTTP_ROUTE
from opentelemetry.semconv.attributes.url_attributes import URL_FULL, URL_PATH, URL_QUERY

from choreokit.tracing._spans import FlowSpan

REDACTED_PATH: Final = "(redacted)"
"""``url.path`` of a span whose route is not known."""

_URL_KEYS: Final = frozenset({URL_FULL, URL_PATH, URL_QUERY})


class ScrubbingProcessor(SpanProcessor):
    """Passes spans on to ``inner`` with URL paths replaced by their routes and queries dropped.

    Args:
        inner: The processor that exports (a ``BatchSpanProcessor``).
    """

    def __init__(self, inner: SpanProcessor) -> None:
        self._inner = inner

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        """Pass the start on."""
        self._inner.on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        """Pass ``span`` on, scrubbed if it names a URL."""
        if type(span) is FlowSpan:  # every hop's two spans: no merged copy to look at
            if span.has_any(_URL_KEYS):
                span = scrubbed(span)
        elif (attributes := span.attributes) and not _URL_KEYS.isdisjoint(attributes):
            span = scrubbed(span)
        self._inner.on_end(span)

    def shutdown(self) -> None:
        """Shut the inner processor down."""
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Flush the inner processor."""
        return self._inner.force_flush(timeout_millis)


def scrubbed(span: ReadableSpan) -> ReadableSpan:
    """A copy of ``span`` whose URL attributes hold no value a request sent."""
    attributes = {k: v for k, v in (span.attributes or {}).items() if k not in _URL_KEYS}
    if URL_PATH in (span.attributes or {}):
        route = attributes.get(HTTP_ROUTE)
        attributes[URL_PATH] = route if isinstance(route, str) else REDACTED_PATH
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=attributes,
        events=span.events,
        links=span.links,
        kind=span.kind,
        status=span.status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )
