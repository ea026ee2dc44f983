"""Lean spans for the two spans of every hop: the SDK's ``Tracer.start_span``, minus its cost.

A hop makes two spans (``process <topic>`` and ``send <topic>``), so their
cost bounds how fast a traced service can go. The SDK's span costs about
35 µs to start with a dozen attributes (a lock, ``BoundedAttributes``
validating each value, metrics hooks), and even a sampled-out one costs
about 35 µs. :class:`FlowSpan` is a :class:`ReadableSpan` that the middleware
fills directly: the attributes it sets are known-good strings and integers,
so they go into a plain dict. It takes the provider's sampler, id generator,
resource and span processors, so it samples, exports and flushes like any
other span of the provider, and spans a handler makes while it is current
are its children as usual. Values set on it from outside (a handler calling
``trace.get_current_span().set_attribute``) are checked like the SDK does.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType, TracebackType
from typing import Final, cast, final

from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.context import Context
from opentelemetry.sdk.trace import Event, ReadableSpan, Span, SpanLimits, SpanProcessor
from opentelemetry.sdk.trace import Tracer as SdkTracer
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    DEFAULT_OFF,
    DEFAULT_ON,
    Decision,
    ParentBasedTraceIdRatio,
    Sampler,
    TraceIdRatioBased,
)
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState
from opentelemetry.util import types

from choreokit.tracing._naming import EXCEPTION_EVENT, EXCEPTION_TYPE, error_type

logger = logging.getLogger("choreokit.tracing")

_SAMPLED: Final = TraceFlags(TraceFlags.SAMPLED)
_DEFAULT: Final = TraceFlags(TraceFlags.DEFAULT)
_EMPTY_STATE: Final = TraceState()
_EMPTY_CONTEXT: Final = Context()
_DEFAULT_LIMIT: Final = 128
_SAMPLED_DECISIONS: Final = frozenset({Decision.RECORD_AND_SAMPLE})

Attributes = dict[str, types.AttributeValue]


class SharedAttributes:
    """Attributes many spans share (a topic's, a consumer group's), built and encoded once.

    Attributes:
        values: The attributes.
        encoded: Their OTLP encoding, set by the exporter's encoder on first use.
    """

    __slots__ = ("encoded", "values")

    def __init__(self, values: Mapping[str, str | int]) -> None:
        self.values: Mapping[str, str | int] = MappingProxyType(dict(values))
        self.encoded: bytes | None = None


@final  # the hot path asks ``type(span) is FlowSpan``: an ABC's isinstance costs more
class FlowSpan(trace.Span, ReadableSpan):
    """A recording span of one hop, exported through the provider's span processors.

    Built by :class:`SpanFactory`; not thread-safe (a hop's spans live on the
    event loop). Attribute and event counts are capped by the SDK's span
    limits (``OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT`` ...), and what is capped is
    counted as dropped.
    """

    # Defaults most spans keep, as class attributes: fewer per-span writes.
    _events: Sequence[Event] = ()
    _links: Sequence[trace.Link] = ()
    _status = Status(StatusCode.UNSET)
    _instrumentation_info = None
    _dropped_attributes = 0
    _dropped_events = 0
    _end_time: int | None = None

    def __init__(  # noqa: PLR0917 (built in one place, by SpanFactory.start)
        self,
        factory: SpanFactory,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        kind: SpanKind,
        shared: SharedAttributes | None,
        attributes: Attributes,
    ) -> None:
        self._name = name
        self._context: SpanContext | None = context
        self._parent = parent
        self._kind = kind
        self._shared = shared
        self._attributes: Attributes = attributes
        self._resource = factory.resource
        self._instrumentation_scope = factory.scope
        self._factory = factory
        self._start_time = time.time_ns()

    # -- ReadableSpan: what exporters read ------------------------------------------------

    @property
    def attributes(self) -> types.Attributes:
        """The span's attributes (read-only view)."""
        if self._shared is None:
            return MappingProxyType(self._attributes)
        return MappingProxyType({**self._shared.values, **self._attributes})

    def has_any(self, keys: frozenset[str]) -> bool:
        """Whether the span has an attribute among ``keys`` (without copying its attributes)."""
        if not keys.isdisjoint(self._attributes):
            return True
        return self._shared is not None and not keys.isdisjoint(self._shared.values)

    @property
    def plain(self) -> bool:
        """Whether the span has only attributes: no events, links, status or dropped values."""
        return (
            not self._events
            and self._status.status_code is StatusCode.UNSET
            and not self._dropped_attributes
            and not self._links
        )

    @property
    def shared_attributes(self) -> SharedAttributes | None:
        """The attributes this span shares with others (for the encoder)."""
        return self._shared

    @property
    def own_attributes(self) -> Mapping[str, types.AttributeValue]:
        """The attributes of this span alone (for the encoder)."""
        return self._attributes

    @property
    def events(self) -> Sequence[Event]:
        """The span's events, oldest first."""
        return tuple(self._events)

    @property
    def dropped_attributes(self) -> int:
        """Attributes left out because of the attribute count limit."""
        return self._dropped_attributes

    @property
    def dropped_events(self) -> int:
        """Events left out because of the event count limit."""
        return self._dropped_events

    # -- trace.Span: what instrumentation writes ------------------------------------------

    def get_span_context(self) -> SpanContext:
        """The span's context (its trace and span ids)."""
        return cast("SpanContext", self._context)  # set once, never None

    def is_recording(self) -> bool:
        """Whether the span still takes attributes and events (until it ends)."""
        return self._end_time is None

    def set_attributes(self, attributes: Mapping[str, types.AttributeValue]) -> None:
        """Set several attributes; invalid values are dropped with a warning, as in the SDK."""
        for key, value in attributes.items():
            self.set_attribute(key, value)

    def set_attribute(self, key: str, value: types.AttributeValue) -> None:
        """Set one attribute; an invalid value is dropped with a warning, as in the SDK."""
        if self._end_time is not None:
            logger.warning("setting attribute %r on the ended span %r", key, self._name)
            return
        cleaned = self._factory.checked({key: value})
        if key not in cleaned:
            return
        if self._shared is not None and key in self._shared.values:  # overridden: keep one copy
            self._attributes = {**self._shared.values, **self._attributes}
            self._shared = None
        count = len(self._attributes) + (0 if self._shared is None else len(self._shared.values))
        if key not in self._attributes and count >= self._factory.max_attributes:
            self._dropped_attributes += 1
            return
        self._attributes[key] = cleaned[key]

    def record(self, attributes: Mapping[str, str | int]) -> None:
        """Set attributes the middleware built from known-good strings and integers (no checks)."""
        self._attributes.update(attributes)

    def add_event(
        self,
        name: str,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
    ) -> None:
        """Add an event (for example a failed try of the handler)."""
        if self._end_time is not None:
            return
        if len(self._events) >= self._factory.max_events:
            self._dropped_events += 1
            return
        cleaned = self._factory.checked(attributes or {})
        self._events = [*self._events, Event(name, cleaned, timestamp or time.time_ns())]

    def add_link(self, context: SpanContext, attributes: types.Attributes = None) -> None:
        """Link another span (an invalid context without attributes is ignored, as in the SDK)."""
        if self._end_time is not None:
            return
        if not context.is_valid and not attributes and not context.trace_state:
            return
        link = trace.Link(context, self._factory.checked(attributes or {}))
        self._links = [*self._links, link]

    def update_name(self, name: str) -> None:
        """Rename the span."""
        if self._end_time is None:
            self._name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        """Set the status: OK is final, UNSET changes nothing (as in the SDK)."""
        if self._end_time is not None or self._status.status_code is StatusCode.OK:
            return
        if isinstance(status, StatusCode):
            status = Status(status, description)
        if status.status_code is not StatusCode.UNSET:
            self._status = status

    def record_exception(
        self,
        exception: BaseException,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,  # noqa: ARG002 (the span API's signature)
    ) -> None:
        """Record only the exception's type: messages and stack traces may carry payload data."""
        event = {**(attributes or {}), EXCEPTION_TYPE: error_type(exception)}
        self.add_event(EXCEPTION_EVENT, event, timestamp)

    def end(self, end_time: int | None = None) -> None:
        """End the span and hand it to the provider's span processors (once)."""
        if self._end_time is not None:
            return
        self._end_time = end_time or time.time_ns()
        self._factory.processor.on_end(self)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        """End the span when used as a context manager."""
        self.end()


class SampledOutSpan(trace.NonRecordingSpan):
    """The span of a hop that is not sampled, its :class:`SpanContext` made only if asked for.

    What :meth:`SpanFactory.start` returns for a span that is not sampled,
    without its cost: the ids are kept as integers, and the W3C
    ``traceparent`` of a child (the hop's ``send`` span, equally not sampled)
    is written from them. Logs and spans that read it from the current context
    get the same span context the SDK's span would carry.
    """

    def __init__(self, trace_id: int, span_id: int, flags: int, state: TraceState) -> None:
        # The span context is built on first use (NonRecordingSpan keeps it in _context).
        self._context: SpanContext | None = None  # type: ignore[assignment]
        self.trace_id = trace_id
        self.span_id = span_id
        self.flags = flags
        self.state = state
        self.tracestate = state.to_header() if state else None
        """The W3C ``tracestate`` this span's children carry (``None`` for none)."""

    def get_span_context(self) -> SpanContext:
        """The span's context (its trace and span ids, not sampled)."""
        context = self._context
        if context is None:
            context = self._context = SpanContext(
                self.trace_id, self.span_id, False, TraceFlags(self.flags), self.state
            )
        return context

    def child_traceparent(self, span_id: int) -> str:
        """The W3C ``traceparent`` of a child span with ``span_id`` (not sampled either)."""
        return f"00-{self.trace_id:032x}-{span_id:016x}-{self.flags:02x}"


class SpanFactory:
    """Starts :class:`FlowSpan` objects as an SDK ``Tracer`` of the same provider would.

    Args:
        tracer: An SDK tracer: its sampler, id generator, resource, scope and
            span processors are used.
    """

    def __init__(self, tracer: SdkTracer, scope: InstrumentationScope) -> None:
        self.sampler = tracer.sampler
        self.resource = tracer.resource
        self.processor: SpanProcessor = tracer.span_processor
        self.ids = tracer.id_generator
        self.scope = scope
        limits = SpanLimits()
        self.max_attributes = limits.max_span_attributes or _DEFAULT_LIMIT
        self.max_events = limits.max_events or _DEFAULT_LIMIT
        self._max_value_length = limits.max_span_attribute_length
        self.random_ids = self.ids.is_trace_id_random()
        """Whether the id generator's trace ids are random (W3C's ``random`` trace flag)."""
        self.decide = _decider(self.sampler)
        """The sampler's decision as a plain function; ``None`` for a sampler not standard."""

    def checked(self, attributes: Mapping[str, types.AttributeValue]) -> Attributes:
        """``attributes`` without the invalid values, checked (and warned about) as the SDK does."""
        bounded = BoundedAttributes(
            maxlen=None,
            attributes=attributes,
            immutable=False,
            max_value_len=self._max_value_length,
        )
        return dict(bounded.items())

    def start(
        self,
        name: str,
        kind: SpanKind,
        parent: SpanContext | None,
        context: Context | None,
        shared: SharedAttributes | None = None,
        *,
        trace_id: int | None = None,
    ) -> trace.Span:
        """Start a span, child of ``parent`` (a new trace when it is ``None`` or invalid).

        Args:
            name: The span's name.
            kind: CONSUMER or PRODUCER.
            parent: The parent's span context (remote for a received record).
            context: The context ``parent`` comes from, for samplers that read
                it; ``None`` means the current context.
            shared: Attributes the span shares with others of its kind.
            trace_id: The new trace's id when ``parent`` is ``None`` (default: a new one).

        Returns:
            A :class:`FlowSpan` when sampled, else a non-recording span that still
            carries the trace context onward.
        """
        if parent is not None and not parent.is_valid:
            parent = None
        if parent is None:
            if trace_id is None:
                trace_id = self.ids.generate_trace_id()
            flags = TraceFlags.RANDOM_TRACE_ID if self.random_ids else 0
        else:
            trace_id = parent.trace_id
            flags = parent.trace_flags & TraceFlags.RANDOM_TRACE_ID
        attributes: Attributes
        if self.decide is not None:  # a standard sampler, decided without the SDK's call
            sampled = self.decide(None if parent is None else parent.trace_flags, trace_id)
            state = _EMPTY_STATE if parent is None else parent.trace_state
            attributes = {}
        else:
            if context is None and parent is not None and parent.is_remote:
                context = trace.set_span_in_context(trace.NonRecordingSpan(parent), _EMPTY_CONTEXT)
            result = self.sampler.should_sample(context, trace_id, name, kind)
            sampled = result.decision in _SAMPLED_DECISIONS
            state = result.trace_state or _EMPTY_STATE
            attributes = dict(result.attributes or {})
        span_context = SpanContext(
            trace_id,
            self.ids.generate_span_id(),
            False,
            TraceFlags(flags | TraceFlags.SAMPLED) if sampled else TraceFlags(flags),
            state,
        )
        if not sampled:
            return trace.NonRecordingSpan(span_context)
        span = FlowSpan(self, name, span_context, parent, kind, shared, attributes)
        # Processors type their argument as the SDK's span; FlowSpan offers the same methods.
        self.processor.on_start(cast("Span", span), parent_context=context)
        return span


Decide = Callable[[int | None, int], bool]
"""Whether a span with a parent of these trace flags (``None``: a root) and trace id is sampled."""


def _parent_sampled(parent_flags: int) -> bool:
    return bool(parent_flags & TraceFlags.SAMPLED)


def _decider(sampler: Sampler) -> Decide | None:  # noqa: PLR0911 (one answer per sampler)
    """The decision of a standard sampler as a plain function, or ``None`` for any other.

    The standard samplers (``OTEL_TRACES_SAMPLER``) add no attributes and keep
    the parent's trace state, so only the decision matters; a parent-based one
    with its default delegates follows the parent's sampled flag.
    ``tests/unit/test_tracing_spans.py`` checks each against the SDK's own answer.
    """
    if sampler is ALWAYS_ON:
        return lambda _parent, _trace_id: True
    if sampler is ALWAYS_OFF:
        return lambda _parent, _trace_id: False
    if type(sampler) is TraceIdRatioBased:
        return _ratio(sampler.bound)
    if sampler is DEFAULT_ON:
        return lambda parent, _trace_id: parent is None or _parent_sampled(parent)
    if sampler is DEFAULT_OFF:
        return lambda parent, _trace_id: parent is not None and _parent_sampled(parent)
    root = getattr(sampler, "_root", None)  # ParentBasedTraceIdRatio keeps its ratio there
    if type(sampler) is ParentBasedTraceIdRatio and type(root) is TraceIdRatioBased:
        by_ratio = _ratio(root.bound)
        return lambda parent, trace_id: (
            by_ratio(None, trace_id) if parent is None else _parent_sampled(parent)
        )
    return None


def _ratio(bound: int) -> Decide:
    limit = TraceIdRatioBased.TRACE_ID_LIMIT
    return lambda _parent, trace_id: trace_id & limit < bound
