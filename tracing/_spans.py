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
from collections.abc import Mapping, Sequence
from types import MappingProxyType, TracebackType
from typing import Final, cast

from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.context import Context
from opentelemetry.sdk.trace import Event, ReadableSpan, Span, SpanLimits, SpanProcessor
from opentelemetry.sdk.trace import Tracer as SdkTracer
from opentelemetry.sdk.trace.sampling import DEFAULT_ON, Decision
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState
from opentelemetry.util import types

from tracing._naming import EXCEPTION_EVENT, EXCEPTION_TYPE, error_type

logger = logging.getLogger("choreokit.tracing")

_SAMPLED: Final = TraceFlags(TraceFlags.SAMPLED)
_DEFAULT: Final = TraceFlags(TraceFlags.DEFAULT)
_EMPTY_STATE: Final = TraceState()
_EMPTY_CONTEXT: Final = Context()
_DEFAULT_LIMIT: Final = 128
_SAMPLED_DECISIONS: Final = frozenset({Decision.RECORD_AND_SAMPLE})

Attributes = dict[str, types.AttributeValue]


class FlowSpan(trace.Span, ReadableSpan):
    """A recording span of one hop, exported through the provider's span processors.

    Built by :class:`SpanFactory`; not thread-safe (a hop's spans live on the
    event loop). Attribute and event counts are capped by the SDK's span
    limits (``OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT`` ...), and what is capped is
    counted as dropped.
    """

    def __init__(  # noqa: PLR0917 (built in one place, by SpanFactory.start)
        self,
        factory: SpanFactory,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        kind: SpanKind,
        attributes: Attributes,
    ) -> None:
        self._name = name
        self._context: SpanContext | None = context
        self._span_context = context
        self._parent = parent
        self._kind = kind
        self._attributes: Attributes = attributes
        self._events: list[Event] = []
        self._links: Sequence[trace.Link] = ()
        self._status = _UNSET
        self._resource = factory.resource
        self._instrumentation_scope = factory.scope
        self._instrumentation_info = None
        self._factory = factory
        self._dropped_attributes = 0
        self._dropped_events = 0
        self._start_time = time.time_ns()
        self._end_time: int | None = None

    # -- ReadableSpan: what exporters read ------------------------------------------------

    @property
    def attributes(self) -> types.Attributes:
        """The span's attributes (read-only view)."""
        return MappingProxyType(self._attributes)

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
        return self._span_context

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
        if key not in self._attributes and len(self._attributes) >= self._factory.max_attributes:
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
        self._events.append(Event(name, cleaned, timestamp or time.time_ns()))

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


_UNSET: Final = Status(StatusCode.UNSET)


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
        self._max_value_length = limits.max_attribute_length
        self._random_ids = self.ids.is_trace_id_random()
        self._default_sampler = self.sampler is DEFAULT_ON

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
    ) -> trace.Span:
        """Start a span, child of ``parent`` (a new trace when it is ``None`` or invalid).

        Args:
            name: The span's name.
            kind: CONSUMER or PRODUCER.
            parent: The parent's span context (remote for a received record).
            context: The context ``parent`` comes from, for samplers that read
                it; ``None`` means the current context.

        Returns:
            A :class:`FlowSpan` when sampled, else a non-recording span that still
            carries the trace context onward.
        """
        if parent is not None and not parent.is_valid:
            parent = None
        if parent is None:
            trace_id = self.ids.generate_trace_id()
            flags = TraceFlags.RANDOM_TRACE_ID if self._random_ids else 0
        else:
            trace_id = parent.trace_id
            flags = parent.trace_flags & TraceFlags.RANDOM_TRACE_ID
        attributes: Attributes
        if self._default_sampler:  # parentbased_always_on, decided without the SDK's call
            sampled = parent is None or parent.trace_flags & TraceFlags.SAMPLED
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
        span = FlowSpan(self, name, span_context, parent, kind, attributes)
        # Processors type their argument as the SDK's span; FlowSpan offers the same methods.
        self.processor.on_start(cast("Span", span), parent_context=context)
        return span
