"""CloudEvents <-> Kafka record: binary content mode out, binary and structured mode in."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ValidationError

from choreokit.events._attributes import (
    MAX_ATTRIBUTE_LENGTH,
    MAX_TIME,
    MIN_TIME,
    attribute_problem,
    check_attribute,
    is_dataversion,
    parse_time,
)
from choreokit.events._envelope import (
    CE_HEADERS,
    H_CAUSATION,
    H_CONTENT_TYPE,
    H_CORRELATION,
    H_DATAVERSION,
    H_ID,
    H_JOINED,
    H_SOURCE,
    H_SPECVERSION,
    H_TIME,
    H_TRACEPARENT,
    H_TRACESTATE,
    H_TYPE,
    JSON,
    SPECVERSION,
    STRUCTURED_JSON,
    Envelope,
)
from choreokit.events._errors import (
    InvalidEnvelopeError,
    InvalidPayloadError,
    MalformedJsonError,
    UnsupportedContentTypeError,
)
from choreokit.events._model import Event
from choreokit.events._sensitive import error_text

Headers = Sequence[tuple[str, bytes | None]]
"""Kafka record headers as aiokafka gives them: (name, value) pairs, repeats allowed."""

_ENCODED_JSON = JSON.encode()
_ENCODED_SPECVERSION = SPECVERSION.encode()
_WANTED = CE_HEADERS | {H_CONTENT_TYPE, H_TRACEPARENT, H_TRACESTATE}
_STRUCTURED_KEYS = {
    "specversion": H_SPECVERSION,
    "id": H_ID,
    "source": H_SOURCE,
    "type": H_TYPE,
    "dataversion": H_DATAVERSION,
    "time": H_TIME,
    "correlationid": H_CORRELATION,
    "causationid": H_CAUSATION,
    "traceparent": H_TRACEPARENT,
    "tracestate": H_TRACESTATE,
    "joined": H_JOINED,
}


@dataclass(frozen=True, slots=True)
class DecodedRecord:
    """A record whose envelope has been read; the payload is not yet validated.

    Attributes:
        envelope: The CloudEvents attributes.
        data: The JSON payload as bytes (binary mode) or as the already-parsed
            ``data`` member (structured mode).
        structured: Whether the record came in structured content mode.
    """

    envelope: Envelope
    data: bytes | Any
    structured: bool

    def event(self, model: type[Event]) -> Event:
        """Validate the payload against ``model``.

        Raises:
            InvalidPayloadError: The payload is not JSON or does not validate.
        """
        info = model.event_info()
        try:
            if self.structured:
                return model.model_validate(self.data)
            return model.model_validate_json(self.data)
        except ValidationError as exc:
            errors = exc.errors(include_url=False)
            if errors and errors[0]["type"] == "json_invalid":
                raise MalformedJsonError(info.type, info.version, errors[0]["msg"]) from None
            raise InvalidPayloadError(
                info.type, info.version, describe_validation_error(exc, model=model)
            ) from None


def describe_validation_error(
    exc: ValidationError, limit: int = 5, model: type[BaseModel] | None = None
) -> str:
    """Summarise a pydantic error as ``path: message [rule]`` items.

    No input value is repeated (see :func:`error_text`), so the summary may be logged.
    """
    parts = []
    for error in exc.errors(include_url=False)[:limit]:
        path = ".".join(str(p) for p in error["loc"]) or "(root)"
        parts.append(f"{path}: {error_text(error, model)} [{error['type']}]")
    extra = exc.error_count() - limit
    if extra > 0:
        parts.append(f"and {extra} more")
    return "; ".join(parts)


def encode_headers(envelope: Envelope) -> list[tuple[str, bytes]]:
    """Return the Kafka headers that carry ``envelope`` in binary content mode."""
    headers = [
        (H_CONTENT_TYPE, _ENCODED_JSON),
        (H_SPECVERSION, _ENCODED_SPECVERSION),
        (H_ID, envelope.id.encode()),
        (H_SOURCE, envelope.source.encode()),
        (H_TYPE, envelope.type.encode()),
        (H_DATAVERSION, str(envelope.dataversion).encode()),
        (H_TIME, envelope.time.isoformat().encode()),
        (H_CORRELATION, envelope.correlation_id.encode()),
    ]
    if envelope.causation_id is not None:
        headers.append((H_CAUSATION, envelope.causation_id.encode()))
    if envelope.traceparent is not None:
        headers.append((H_TRACEPARENT, envelope.traceparent.encode()))
        if envelope.tracestate:
            headers.append((H_TRACESTATE, envelope.tracestate.encode()))
    if envelope.joined:
        headers.append((H_JOINED, envelope.joined.encode()))
    return headers


def encode_payload(event: Event) -> bytes:
    """Serialise ``event`` as the record value (compact JSON)."""
    return event.__pydantic_serializer__.to_json(event)


def to_structured(envelope: Envelope, data: Any) -> dict[str, Any]:
    """Return the structured-mode (JSON) form of an event."""
    out: dict[str, Any] = {
        "specversion": SPECVERSION,
        "id": envelope.id,
        "source": envelope.source,
        "type": envelope.type,
        "datacontenttype": JSON,
        "dataversion": str(envelope.dataversion),
        "time": envelope.time.isoformat(),
        "correlationid": envelope.correlation_id,
    }
    if envelope.causation_id is not None:
        out["causationid"] = envelope.causation_id
    if envelope.traceparent is not None:
        out["traceparent"] = envelope.traceparent
    if envelope.tracestate:
        out["tracestate"] = envelope.tracestate
    if envelope.joined:
        out["joined"] = envelope.joined
    out["data"] = data
    return out


def header_value(headers: Headers, name: str) -> str | None:
    """Return the last value of header ``name`` as text, or ``None`` if absent or not UTF-8."""
    found: bytes | None = None
    for key, value in headers:
        if key == name:
            found = value
    if found is None:
        return None
    try:
        return found.decode()
    except UnicodeDecodeError:
        return None


def header_values(headers: Headers, names: frozenset[str]) -> dict[str, str]:
    """:func:`header_value` of each of ``names`` present, in one pass over ``headers``."""
    found = {key: value for key, value in headers if key in names}  # the last one wins
    values: dict[str, str] = {}
    for key, raw in found.items():
        if raw is not None:
            try:
                values[key] = raw.decode()
            except UnicodeDecodeError:
                continue
    return values


def decode(headers: Headers, value: bytes | None, *, fallback_time: datetime) -> DecodedRecord:
    """Read the envelope of a Kafka record in binary or structured content mode.

    Args:
        headers: The record's headers.
        value: The record's value.
        fallback_time: Used as ``time`` when the producer did not set one (the
            attribute is optional in CloudEvents); pass the record's timestamp.

    Raises:
        DecodeError: The record is not a valid event; the subclass says why.
    """
    common = _decode_common(headers, value, fallback_time)
    if common is not None:
        return common
    return _decode_general(headers, value, fallback_time)


def _decode_general(
    headers: Headers, value: bytes | None, fallback_time: datetime
) -> DecodedRecord:
    """:func:`decode` for every record, with a check per attribute and an error for each refusal."""
    attrs = _header_attributes(headers)
    content_type = attrs.pop(H_CONTENT_TYPE, None)
    media_type = content_type.split(";", 1)[0].strip().lower() if content_type else JSON
    if media_type == STRUCTURED_JSON:
        return _decode_structured(value, fallback_time)
    if media_type != JSON:
        raise UnsupportedContentTypeError(content_type or "")
    if value is None:
        raise InvalidPayloadError(
            attrs.get(H_TYPE) or "?", _version(attrs.get(H_DATAVERSION)), "record has no value"
        )
    return DecodedRecord(_envelope(attrs, fallback_time), value, structured=False)


_UNBOUNDED = sys.maxsize


def _decode_common(
    headers: Headers, value: bytes | None, fallback_time: datetime
) -> DecodedRecord | None:
    """The record as choreokit's producers send it, or ``None``: ask :func:`_decode_general`.

    A binary-mode record with each header once, ``content-type: application/json``,
    ``ce_specversion: 1.0``, no ``ce_joined`` and attributes that pass the checks gets
    the envelope the general path gives it, from one dict of the headers and one check
    over all the attributes' text instead of a loop and a check per attribute. Anything
    else, and anything the general path may refuse, is left to it (so every refusal and
    its reason is the general path's).
    """
    try:
        found: dict[str, Any] = dict(headers)  # a None value fails below, as AttributeError
    except (TypeError, ValueError):
        return None
    if (
        len(found) != len(headers)
        or found.get(H_CONTENT_TYPE) != _ENCODED_JSON
        or found.get(H_SPECVERSION) != _ENCODED_SPECVERSION
        or H_JOINED in found
        or value is None
    ):
        return None
    try:
        event_id = found[H_ID].decode()
        source = found[H_SOURCE].decode()
        event_type = found[H_TYPE].decode()
        texts = [event_id, source, event_type]
        raw = found.get(H_CORRELATION)
        correlation = raw.decode() if raw is not None else None
        raw = found.get(H_CAUSATION)
        causation = raw.decode() if raw is not None else None
        raw = found.get(H_TRACEPARENT)
        traceparent = raw.decode() if raw is not None else None
        raw = found.get(H_TRACESTATE)
        tracestate = raw.decode() if raw is not None else None
        raw = found.get(H_DATAVERSION)
        version = raw.decode() if raw is not None else None
        raw = found.get(H_TIME)
        time_text = raw.decode() if raw is not None else None
        moment = _common_time(time_text) if time_text is not None else fallback_time
    except (KeyError, AttributeError, UnicodeDecodeError, ValueError):
        return None  # absent, None, not UTF-8, not a time: the general path says which
    texts.extend(
        t for t in (correlation, causation, traceparent, tracestate, time_text) if t is not None
    )
    if (
        moment is None
        or not (event_id.strip() and source.strip() and event_type.strip())
        or max(map(len, texts)) > MAX_ATTRIBUTE_LENGTH
        or not _allowed(" ".join(texts))
        or (version is not None and not is_dataversion(version))
    ):
        return None
    envelope = Envelope(
        event_id,
        source,
        event_type,
        int(version) if version is not None else 1,
        moment,
        correlation or event_id,
        causation or None,
        traceparent,
        tracestate,
    )
    return DecodedRecord(envelope, value, structured=False)


def _allowed(text: str) -> bool:
    """Whether ``text`` holds none of the characters an attribute may not hold.

    Those are all non-printable (controls, format characters, surrogates, line and
    paragraph separators: pinned by a test), so printable text needs no search.
    """
    return text.isprintable() or attribute_problem(text, max_length=_UNBOUNDED) is None


def _common_time(text: str) -> datetime | None:
    """``ce_time`` as the general path reads it, or ``None`` where it may refuse it."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None or moment.utcoffset() is None or not MIN_TIME <= moment < MAX_TIME:
        return None
    return moment


def _header_attributes(headers: Headers) -> dict[str, str]:
    attrs: dict[str, str] = {}
    for key, raw in headers:
        if key not in _WANTED:
            continue
        if key in attrs:
            raise InvalidEnvelopeError(key, "appears more than once")
        if raw is None:
            continue
        try:
            attrs[key] = raw.decode()
        except UnicodeDecodeError:
            raise InvalidEnvelopeError(key, "is not valid UTF-8") from None
    return attrs


def _decode_structured(value: bytes | None, fallback_time: datetime) -> DecodedRecord:
    if not value:
        raise InvalidEnvelopeError("data", "is missing: a structured-mode record has no value")
    try:
        doc = json.loads(value)
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedJsonError("?", 1, f"structured event is not JSON: {exc}") from None
    except RecursionError:
        # Not a ChoreoError, so it would escape the consumer's dead-lettering and the
        # record would be read again forever.
        raise MalformedJsonError("?", 1, "structured event is nested too deeply") from None
    if not isinstance(doc, dict):
        raise InvalidEnvelopeError("(event)", "must be a JSON object in structured mode")
    if "data_base64" in doc:
        raise UnsupportedContentTypeError("data_base64 (binary data)")
    datacontenttype = doc.get("datacontenttype")
    if datacontenttype is not None and (
        not isinstance(datacontenttype, str) or datacontenttype.split(";")[0].strip() != JSON
    ):
        raise UnsupportedContentTypeError(str(datacontenttype))
    attrs: dict[str, str] = {}
    for key, header in _STRUCTURED_KEYS.items():
        raw = doc.get(key)
        if raw is None:
            continue
        if isinstance(raw, bool) or not isinstance(raw, str | int):
            raise InvalidEnvelopeError(key, "must be a string")
        attrs[header] = str(raw)
    envelope = _envelope(attrs, fallback_time)
    if "data" not in doc:
        raise InvalidPayloadError(envelope.type, envelope.dataversion, "'data' is missing")
    return DecodedRecord(envelope, doc["data"], structured=True)


def _required(attrs: dict[str, str], header: str) -> str:
    raw = attrs.get(header)
    if raw is None or not raw.strip():
        raise InvalidEnvelopeError(header, "is missing")
    return _checked(header, raw)


def _checked(header: str, raw: str) -> str:
    if len(raw) <= MAX_ATTRIBUTE_LENGTH and raw.isascii() and raw.isprintable():
        return raw  # what check_attribute passes, without its calls (several per record)
    return check_attribute(header, raw)


_VERSIONS = {str(n): n for n in range(1, 100)}
"""The ``dataversion`` values of every real schema, read without the pattern."""


def _version(raw: str | None) -> int:
    if raw is None:
        return 1
    known = _VERSIONS.get(raw)
    if known is not None:
        return known
    if not is_dataversion(raw):
        raise InvalidEnvelopeError(H_DATAVERSION, f"must be a positive integer, not {raw!r}")
    return int(raw)


def _time(raw: str | None, fallback: datetime) -> datetime:
    if raw is None:
        return fallback
    return parse_time(H_TIME, raw)


def _envelope(attrs: dict[str, str], fallback_time: datetime) -> Envelope:
    specversion = attrs.get(H_SPECVERSION)
    if specversion is None:
        raise InvalidEnvelopeError(H_SPECVERSION, "is missing")
    if specversion != SPECVERSION:
        raise InvalidEnvelopeError(
            H_SPECVERSION, f"is {specversion[:16]!r}; only {SPECVERSION!r} is supported"
        )
    event_id = _required(attrs, H_ID)
    correlation = attrs.get(H_CORRELATION)
    causation = attrs.get(H_CAUSATION)
    return Envelope(
        id=event_id,
        source=_required(attrs, H_SOURCE),
        type=_required(attrs, H_TYPE),
        dataversion=_version(attrs.get(H_DATAVERSION)),
        time=_time(attrs.get(H_TIME), fallback_time),
        correlation_id=_checked(H_CORRELATION, correlation) if correlation else event_id,
        causation_id=_checked(H_CAUSATION, causation) if causation else None,
        traceparent=_optional(attrs, H_TRACEPARENT),
        tracestate=_optional(attrs, H_TRACESTATE),
        joined=_joined(attrs.get(H_JOINED)),
    )


def _joined(raw: str | None) -> str | None:
    if raw is None:
        return None
    value = _checked(H_JOINED, raw)
    if not all(part.strip() == part and part for part in value.split(",")):
        raise InvalidEnvelopeError(H_JOINED, "must be event ids separated by commas")
    return value


def _optional(attrs: dict[str, str], header: str) -> str | None:
    raw = attrs.get(header)
    return None if raw is None else _checked(header, raw)


_MIN_MS = int(MIN_TIME.timestamp() * 1000)
_MAX_MS = int(MAX_TIME.timestamp() * 1000)


def record_time(timestamp_ms: int | None) -> datetime:
    """Return a Kafka record timestamp as an aware datetime.

    A producer chooses the timestamp (any 64-bit number): one that is missing or
    outside the years the event layer accepts (:data:`MIN_TIME` .. :data:`MAX_TIME`)
    gives now instead, so no record's timestamp can break a consumer.
    """
    if timestamp_ms is None or not _MIN_MS <= timestamp_ms < _MAX_MS:
        return datetime.now(UTC)
    return datetime.fromtimestamp(timestamp_ms / 1000, UTC)
