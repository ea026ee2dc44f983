"""Trace context at the edge: continue a trusted caller's trace, or start one and link theirs.

Uses the OpenTelemetry API only, so it works with or without an SDK: without
one, a trusted caller's ``traceparent`` passes through unchanged and an
untrusted caller's is dropped (no trace is started).
"""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.semconv._incubating.attributes.cloudevents_attributes import (
    CLOUDEVENTS_EVENT_ID,
    CLOUDEVENTS_EVENT_SOURCE,
    CLOUDEVENTS_EVENT_TYPE,
)
from opentelemetry.semconv._incubating.attributes.messaging_attributes import (
    MESSAGING_DESTINATION_NAME,
)
from opentelemetry.semconv.attributes.http_attributes import HTTP_REQUEST_METHOD, HTTP_ROUTE
from opentelemetry.trace import Link, Span, SpanKind, TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import Attributes

from choreokit.services.gateway._admission import Admitted
from choreokit.services.gateway._keys import ApiKey

SPAN_NAME = "POST /events"
"""HTTP server span name: method and route (one span per event of the request)."""

ATTR_KEY = "choreo.gateway.key_id"
ATTR_TRUSTED = "choreo.gateway.trusted"


class TraceBridge:
    """Starts the gateway's span for each accepted event and yields the context to forward."""

    def __init__(self, provider: TracerProvider | None = None) -> None:
        source = provider or trace.get_tracer_provider()
        self._tracer = source.get_tracer("choreokit.gateway")
        self._propagator = TraceContextTextMapPropagator()

    def start(self, admitted: Admitted, key: ApiKey) -> Span:
        """Start the span of ``admitted``: a child of the caller's if trusted, else a new root.

        An untrusted caller's context is kept as a span link, so its trace and
        ours can be connected without the caller choosing our trace id.
        """
        carrier = {}
        if admitted.traceparent:
            carrier["traceparent"] = admitted.traceparent
            if admitted.tracestate:
                carrier["tracestate"] = admitted.tracestate
        caller = self._propagator.extract(carrier, context=Context())
        info = type(admitted.event).event_info()
        attributes: Attributes = {
            CLOUDEVENTS_EVENT_ID: admitted.event_id,
            CLOUDEVENTS_EVENT_TYPE: info.type,
            CLOUDEVENTS_EVENT_SOURCE: admitted.source,
            MESSAGING_DESTINATION_NAME: info.topic,
            HTTP_REQUEST_METHOD: "POST",
            HTTP_ROUTE: "/events",
            ATTR_KEY: key.id,
            ATTR_TRUSTED: key.trusted,
        }
        if key.trusted:
            return self._tracer.start_span(
                SPAN_NAME, context=caller, kind=SpanKind.SERVER, attributes=attributes
            )
        caller_span = trace.get_current_span(caller).get_span_context()
        links = [Link(caller_span)] if caller_span.is_valid else []
        return self._tracer.start_span(
            SPAN_NAME, context=Context(), kind=SpanKind.SERVER, attributes=attributes, links=links
        )

    def context_of(self, span: Span) -> tuple[str | None, str | None]:
        """The ``traceparent`` and ``tracestate`` that continue ``span`` (``None`` if none)."""
        if not span.get_span_context().is_valid:  # no SDK, no caller's trace: nothing to carry
            return None, None
        carrier: dict[str, str] = {}
        self._propagator.inject(carrier, context=trace.set_span_in_context(span, Context()))
        return carrier.get("traceparent"), carrier.get("tracestate") or None
