"""OTLP protobuf encoding of finished spans, written straight to bytes.

The OTLP exporters encode a batch with ``opentelemetry-exporter-otlp-proto-common``,
which builds one protobuf message object per span, attribute and value in
Python: about 80 µs per span on a small machine, on the exporter thread, under
the interpreter lock the event loop needs. :func:`encode_request` writes the
same ``ExportTraceServiceRequest`` bytes directly and keeps the encoded form of
what repeats from span to span (resource, scope, and attribute pairs such as
``messaging.system=kafka`` or a topic name), which makes it several times
faster. ``tests/unit/test_tracing_encoding.py`` pins it to the SDK's encoder:
both must decode to the same message for every kind of span.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Any, Final

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind

from choreokit.tracing._naming import (
    CLOUDEVENTS_EVENT_ID,
    MESSAGING_MESSAGE_CONVERSATION_ID,
    MESSAGING_MESSAGE_ID,
)
from choreokit.tracing._spans import FlowSpan

_LEN: Final = 2
_ONE_BYTE: Final = 0x80
"""Varints below this take one byte."""
_OBJECTS_KEPT: Final = 64
"""Encoded resources (and scopes) kept; a process usually has one or two."""
_CACHE_LIMIT: Final = 4096
"""Encoded attribute pairs kept; the cache starts over when it is full."""

_UNIQUE: Final = frozenset(
    {MESSAGING_MESSAGE_ID, MESSAGING_MESSAGE_CONVERSATION_ID, CLOUDEVENTS_EVENT_ID}
)
"""String attributes whose values rarely repeat: caching them would only churn the cache."""
_CONTEXT_HAS_IS_REMOTE: Final = 0x100
_CONTEXT_IS_REMOTE: Final = 0x200

_pack_fixed64 = struct.Struct("<Q").pack
_pack_times = struct.Struct("<BQBQ").pack
_pack_fixed32 = struct.Struct("<I").pack
_pack_double = struct.Struct("<d").pack


def _varint(value: int) -> bytes:
    if value < 0:
        value &= 0xFFFF_FFFF_FFFF_FFFF  # int64 as two's complement, ten bytes
    if value < _ONE_BYTE:
        return bytes((value,))
    out = bytearray()
    while value >= _ONE_BYTE:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _tag(field: int, wire_type: int) -> bytes:
    return _varint(field << 3 | wire_type)


_LEN_TAGS: Final = tuple(bytes((field << 3 | _LEN,)) for field in range(16))
"""One-byte tags of length-delimited fields 0 to 15."""


def _field(field: int, payload: bytes) -> bytes:
    """A length-delimited field (string, bytes or message)."""
    size = len(payload)
    if field < len(_LEN_TAGS) and size < _ONE_BYTE:
        return _LEN_TAGS[field] + bytes((size,)) + payload
    return _tag(field, _LEN) + _varint(size) + payload


# AnyValue (string 1, bool 2, int 3, double 4, array 5, kvlist 6, bytes 7): a oneof,
# so a zero or empty value is still written.
def _any_value(value: Any) -> bytes:  # noqa: PLR0911 (one answer per value type)
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, str):
        return _field(1, value.encode())
    if isinstance(value, int):
        return b"\x18" + _varint(value)
    if isinstance(value, float):
        return b"\x21" + _pack_double(value)
    if isinstance(value, bytes):
        return _field(7, value)
    if isinstance(value, Sequence):
        return _field(5, b"".join(_field(1, _any_value(item)) for item in value))
    if isinstance(value, Mapping):
        return _field(6, b"".join(_field(1, _key_value(str(k), v)) for k, v in value.items()))
    if value is None:
        return b""
    raise TypeError(f"an attribute value of type {type(value).__name__} cannot be exported")


def _key_value(key: str, value: Any) -> bytes:
    return _field(1, key.encode()) + _field(2, _any_value(value))


class SpanEncoder:
    """Encodes batches of finished spans as OTLP ``ExportTraceServiceRequest`` bytes.

    One encoder per exporter: it caches encoded resources, scopes and attribute
    pairs. Threads may share it: a cache entry is always the right encoding of
    its key, so a race can only cost a recomputation.
    """

    def __init__(self) -> None:
        self._pairs: dict[tuple[int, str, str], bytes] = {}
        self._keys: dict[str, bytes] = {}
        self._heads: dict[tuple[str, SpanKind], bytes] = {}
        self._resources: dict[int, tuple[Resource, tuple[bytes, bytes]]] = {}
        self._scopes: dict[int, tuple[InstrumentationScope | None, tuple[bytes, bytes]]] = {}

    def encode_request(self, spans: Sequence[ReadableSpan]) -> bytes:
        """The ``ExportTraceServiceRequest`` carrying ``spans``, grouped by resource and scope."""
        grouped: dict[int, dict[int, list[bytes]]] = {}
        for span in spans:
            by_scope = grouped.setdefault(self._resource_key(span.resource), {})
            scope_key = self._scope_key(span.instrumentation_scope or None)
            by_scope.setdefault(scope_key, []).append(_field(2, self._span(span)))
        out = []
        for resource_key, by_scope in grouped.items():
            head, tail = self._resources[resource_key][1]
            scope_spans = [
                _field(2, self._scopes[key][1][0] + b"".join(spans) + self._scopes[key][1][1])
                for key, spans in by_scope.items()
            ]
            out.append(_field(1, head + b"".join(scope_spans) + tail))
        return b"".join(out)

    def _resource_key(self, resource: Resource) -> int:
        """Cache the encoded resource by id (kept with the object, so the id is not reused)."""
        key = id(resource)
        if key not in self._resources:
            if len(self._resources) >= _OBJECTS_KEPT:
                self._resources.clear()
            attributes = self._attributes(1, resource.attributes)
            head = _field(1, attributes)  # ResourceSpans.resource, always written
            self._resources[key] = (resource, (head, _string(3, resource.schema_url)))
        return key

    def _scope_key(self, scope: InstrumentationScope | None) -> int:
        key = id(scope)
        if key not in self._scopes:
            if len(self._scopes) >= _OBJECTS_KEPT:
                self._scopes.clear()
            encoded = b""
            tail = b""
            if scope is not None:
                encoded = _string(1, scope.name) + _string(2, scope.version)
                encoded += self._attributes(3, scope.attributes or {})
                tail = _string(3, scope.schema_url)
            head = _field(1, encoded)  # ScopeSpans.scope, always written
            self._scopes[key] = (scope, (head, tail))
        return key

    def _attributes(self, field: int, attributes: Mapping[str, Any]) -> bytes:
        """Repeated ``KeyValue`` field ``field``; string pairs come from the cache."""
        pairs = self._pairs
        out = []
        for key, value in attributes.items():
            if type(value) is not str:
                out.append(_field(field, _key_value(key, value)))
            elif key in _UNIQUE:  # an id: encoded each time, never cached
                out.append(self._unique(field, key, value))
            else:
                encoded = pairs.get((field, key, value))
                if encoded is None:
                    encoded = _field(field, _key_value(key, value))
                    if len(pairs) >= _CACHE_LIMIT:
                        pairs.clear()
                    pairs[field, key, value] = encoded
                out.append(encoded)
        return b"".join(out)

    def _unique(self, field: int, key: str, value: str) -> bytes:
        """A string pair written in line (the common case: every length fits one byte)."""
        encoded_key = self._key(key)
        raw = value.encode()
        size = len(raw)
        inner = len(encoded_key) + size + 4
        if inner < _ONE_BYTE and field < len(_LEN_TAGS):
            return b"".join(
                (
                    _LEN_TAGS[field],
                    bytes((inner,)),
                    encoded_key,
                    bytes((0x12, size + 2, 0x0A, size)),
                    raw,
                )
            )
        return _field(field, encoded_key + _field(2, _field(1, raw)))

    def _key(self, key: str) -> bytes:
        """``KeyValue.key`` of ``key``, encoded."""
        encoded = self._keys.get(key)
        if encoded is None:
            encoded = self._keys[key] = _field(1, key.encode())
        return encoded

    def _span_attributes(self, span: ReadableSpan) -> bytes:
        """Field 9 of a span; what a :class:`FlowSpan` shares is encoded once."""
        if type(span) is not FlowSpan:
            return self._attributes(9, span.attributes or {})
        own = self._attributes(9, span.own_attributes)
        shared = span.shared_attributes
        if shared is None:
            return own
        if shared.encoded is None:
            shared.encoded = self._attributes(9, shared.values)
        return shared.encoded + own

    def _span(self, span: ReadableSpan) -> bytes:  # noqa: PLR0912 (one branch per optional field)
        if type(span) is FlowSpan and span.plain:
            return self._flow_span(span)
        context = span.get_span_context()
        if context is None:
            raise ValueError(f"span {span.name!r} has no span context")
        parent = span.parent
        out = [
            b"\x0a\x10" + context.trace_id.to_bytes(16, "big"),
            b"\x12\x08" + context.span_id.to_bytes(8, "big"),
        ]
        if context.trace_state:
            out.append(_string(3, ",".join(f"{k}={v}" for k, v in context.trace_state.items())))
        if parent is not None:
            out.append(b"\x22\x08" + parent.span_id.to_bytes(8, "big"))
        out.append(_string(5, span.name))
        out.append(b"\x30" + _varint(span.kind.value + 1))  # SPAN_KIND_INTERNAL is 1
        if span.start_time:
            out.append(b"\x39" + _pack_fixed64(span.start_time))
        if span.end_time:
            out.append(b"\x41" + _pack_fixed64(span.end_time))
        out.append(self._span_attributes(span))
        if span.dropped_attributes:
            out.append(b"\x50" + _varint(span.dropped_attributes))
        for event in span.events:
            encoded = _string(2, event.name)
            if event.timestamp:
                encoded = b"\x09" + _pack_fixed64(event.timestamp) + encoded
            if event.attributes:
                encoded += self._attributes(3, event.attributes)
            if event.dropped_attributes:
                encoded += b"\x20" + _varint(event.dropped_attributes)
            out.append(_field(11, encoded))
        if span.dropped_events:
            out.append(b"\x60" + _varint(span.dropped_events))
        out.extend(_field(13, self._link(link)) for link in span.links)
        if span.dropped_links:
            out.append(b"\x70" + _varint(span.dropped_links))
        status = span.status
        if status is not None:
            encoded = _string(2, status.description)
            if status.status_code.value:
                encoded += b"\x18" + _varint(status.status_code.value)
            out.append(_field(15, encoded))
        out.append(b"\x85\x01" + _pack_fixed32(_flags(parent)))
        return b"".join(out)

    def _flow_span(self, span: FlowSpan) -> bytes:
        """A hop's span without events, links or a status: the fields it has, written in line."""
        context = span.get_span_context()
        parent = span.parent
        out = [b"\x0a\x10", context.trace_id.to_bytes(16, "big"), b"\x12\x08"]
        out.append(context.span_id.to_bytes(8, "big"))
        if context.trace_state:
            out.append(_string(3, ",".join(f"{k}={v}" for k, v in context.trace_state.items())))
        if parent is not None:
            out.append(b"\x22\x08")
            out.append(parent.span_id.to_bytes(8, "big"))
        head = self._heads.get((span.name, span.kind))
        if head is None:
            head = _string(5, span.name) + b"\x30" + _varint(span.kind.value + 1)
            if len(self._heads) >= _OBJECTS_KEPT:
                self._heads.clear()
            self._heads[span.name, span.kind] = head
        out.append(head)
        out.append(_pack_times(0x39, span.start_time or 0, 0x41, span.end_time or 0))
        out.append(self._span_attributes(span))
        out.append(_UNSET_STATUS)
        remote = parent is not None and parent.is_remote
        out.append(_REMOTE_PARENT_FLAGS if remote else _LOCAL_FLAGS)
        return b"".join(out)

    def _link(self, link: Link) -> bytes:
        context = link.context
        encoded = b"\x0a\x10" + context.trace_id.to_bytes(16, "big")
        encoded += b"\x12\x08" + context.span_id.to_bytes(8, "big")
        if link.attributes:
            encoded += self._attributes(4, link.attributes)
        if link.dropped_attributes:
            encoded += b"\x28" + _varint(link.dropped_attributes)
        return encoded + b"\x35" + _pack_fixed32(_flags(context))


def _string(field: int, value: str | None) -> bytes:
    """A proto3 string field: nothing when empty."""
    return _field(field, value.encode()) if value else b""


def _flags(parent: SpanContext | None) -> int:
    if parent is not None and parent.is_remote:
        return _CONTEXT_HAS_IS_REMOTE | _CONTEXT_IS_REMOTE
    return _CONTEXT_HAS_IS_REMOTE


_UNSET_STATUS: Final = _field(15, b"")
_REMOTE_PARENT_FLAGS: Final = b"\x85\x01" + _pack_fixed32(
    _CONTEXT_HAS_IS_REMOTE | _CONTEXT_IS_REMOTE
)
_LOCAL_FLAGS: Final = b"\x85\x01" + _pack_fixed32(_CONTEXT_HAS_IS_REMOTE)
