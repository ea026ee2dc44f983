"""Trace context in Kafka headers through OpenTelemetry's propagator API.

Whatever ``OTEL_PROPAGATORS`` names (``tracecontext``, ``baggage``, ``b3``,
``b3multi``, ``jaeger``, ...) is what ``propagate.inject`` writes and
``propagate.extract`` reads, with the getter and setter below over a record's
``(key, bytes)`` header list, as the contrib aiokafka instrumentation does.

The W3C ``traceparent``/``tracestate`` pair also lives in the event's envelope
(the wire contract names it, and the observer reads it); every other field a
propagator writes travels as an extra header of the outbound record.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from opentelemetry import propagate
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter, Setter
from opentelemetry.trace import SpanContext

from choreokit.events import Envelope, Outbound
from choreokit.tracing._traceparent import format_traceparent

Headers = Sequence[tuple[str, bytes | None]]
HeaderList = list[tuple[str, bytes]]

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
BAGGAGE = "baggage"
W3C_DEFAULT_FIELDS = frozenset({TRACEPARENT, TRACESTATE, BAGGAGE})
"""The fields of OpenTelemetry's default propagators (``OTEL_PROPAGATORS=tracecontext,baggage``)."""


class KafkaHeaderGetter(Getter[Headers]):
    """Reads propagation fields from a record's headers (exact, case-sensitive names)."""

    def get(self, carrier: Headers, key: str) -> list[str] | None:
        """Every value of header ``key`` as text (undecodable ones skipped); ``None`` if absent."""
        values = []
        for name, value in carrier:
            if name == key and value is not None:
                try:
                    values.append(value.decode())
                except UnicodeDecodeError:
                    continue
        return values or None

    def keys(self, carrier: Headers) -> list[str]:
        """The header names of the record."""
        return [name for name, _ in carrier]


class KafkaHeaderSetter(Setter[HeaderList]):
    """Writes propagation fields as record headers, replacing an earlier value of the same name."""

    def set(self, carrier: HeaderList, key: str, value: str) -> None:
        """Set header ``key`` to ``value``."""
        carrier[:] = [(name, v) for name, v in carrier if name != key]
        carrier.append((key, value.encode()))


GETTER = KafkaHeaderGetter()
SETTER = KafkaHeaderSetter()


def uses_default_propagators() -> bool:
    """Whether the global propagator writes exactly W3C trace context and baggage.

    Read through the propagator's public ``fields``; true for the default
    ``OTEL_PROPAGATORS=tracecontext,baggage``, false once anything else (b3,
    jaeger, a custom one) is configured or installed.
    """
    return set(propagate.get_global_textmap().fields) == W3C_DEFAULT_FIELDS


def extract(headers: Headers) -> Context:
    """The context the configured propagators read from ``headers`` (a fresh root context)."""
    return propagate.extract(headers, context=Context(), getter=GETTER)


def inject(outbound: Outbound, context: Context | None = None) -> Outbound:
    """``outbound`` carrying what the configured propagators write for ``context``.

    ``traceparent``/``tracestate`` go into the envelope, any other field into
    the record's extra headers. Unchanged when the propagators write nothing
    (no valid span and no baggage in ``context``).
    """
    carrier: HeaderList = []
    propagate.inject(carrier, context=context, setter=SETTER)
    if not carrier:
        return outbound
    return with_fields(outbound, carrier)


def with_fields(outbound: Outbound, fields: Iterable[tuple[str, bytes]]) -> Outbound:
    """``outbound`` with propagation ``fields``: the W3C pair in its envelope, others as headers."""
    traceparent = tracestate = None
    extra: HeaderList = []
    for name, value in fields:
        if name == TRACEPARENT:
            traceparent = value.decode()
        elif name == TRACESTATE:
            tracestate = value.decode() or None
        else:
            extra.append((name, value))
    envelope: Envelope = outbound.envelope
    if traceparent is not None:
        envelope = envelope.with_trace(traceparent, tracestate)
    kept = [(n, v) for n, v in outbound.headers if n not in {name for name, _ in extra}]
    return Outbound(
        outbound.topic,
        outbound.key,
        outbound.value,
        envelope,
        outbound.event,
        (*kept, *extra),
    )


_BAGGAGE = W3CBaggagePropagator()
_EMPTY = Context()


def baggage_context(headers: Headers) -> Context:
    """A fresh context holding the W3C baggage of ``headers``, if they carry any."""
    for name, _ in headers:
        if name == BAGGAGE:
            break
    else:
        return _EMPTY
    return _BAGGAGE.extract(headers, context=Context(), getter=GETTER)


def with_current_baggage(outbound: Outbound) -> Outbound:
    """``outbound`` with the current context's W3C baggage as its ``baggage`` header."""
    carrier: HeaderList = []
    _BAGGAGE.inject(carrier, setter=SETTER)
    return with_fields(outbound, carrier) if carrier else outbound


def with_trace_of(outbound: Outbound, span_context: SpanContext) -> Outbound:
    """``outbound`` carrying ``span_context`` as its trace context (unchanged if it is invalid)."""
    if not span_context.is_valid:  # a disabled tracer: write no all-zero traceparent
        return outbound
    state = span_context.trace_state.to_header() if span_context.trace_state else None
    return Outbound(
        outbound.topic,
        outbound.key,
        outbound.value,
        outbound.envelope.with_trace(format_traceparent(span_context), state),
        outbound.event,
        outbound.headers,
    )
