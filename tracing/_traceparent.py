"""W3C ``traceparent``: read into a span context and written from one, on every hop."""

from __future__ import annotations

import re

from opentelemetry.context import Context
from opentelemetry.trace import SpanContext, TraceFlags, TraceState, get_current_span
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_TRACEPARENT_HEADER = "traceparent"
_TRACESTATE_HEADER = "tracestate"
_VERSION_00 = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
"""Version 00 of W3C ``traceparent``, parsed here; anything else goes to the propagator."""
_PROPAGATOR = TraceContextTextMapPropagator()


def parse_traceparent(traceparent: str, tracestate: str | None = None) -> SpanContext | None:
    """The remote span context W3C trace-context headers name (``None`` if invalid).

    Reads what ``TraceContextTextMapPropagator`` reads: version 00 here (it is
    on every record, and needs no carrier or context object), any other
    version through the propagator itself.
    """
    ids = version_00_ids(traceparent)
    if ids is None:  # another version, malformed, or all-zero ids: the propagator decides
        carrier = {_TRACEPARENT_HEADER: traceparent}
        if tracestate:
            carrier[_TRACESTATE_HEADER] = tracestate
        extracted = get_current_span(_PROPAGATOR.extract(carrier, context=Context()))
        context = extracted.get_span_context()
        return context if context.is_valid else None
    trace_id, span_id, flags = ids
    state = TraceState.from_header([tracestate]) if tracestate else TraceState()
    return SpanContext(trace_id, span_id, True, TraceFlags(flags), state)


def version_00_ids(traceparent: str) -> tuple[int, int, int] | None:
    """``(trace id, span id, flags)`` of a valid version-00 ``traceparent``, else ``None``.

    ``None`` for another version too: only :func:`parse_traceparent` reads those.
    """
    match = _VERSION_00.fullmatch(traceparent)
    if match is None:
        return None
    trace_id = int(match[1], 16)
    span_id = int(match[2], 16)
    if not trace_id or not span_id:
        return None
    return trace_id, span_id, int(match[3], 16)


def format_traceparent(span_context: SpanContext) -> str:
    """The W3C ``traceparent`` of ``span_context``, as ``TraceContextTextMapPropagator`` writes it.

    Written here rather than through ``inject`` because it runs on every publish
    and needs no carrier or context object.
    """
    return (
        f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-"
        f"{span_context.trace_flags:02x}"
    )
