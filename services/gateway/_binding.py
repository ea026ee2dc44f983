"""The CloudEvents HTTP binding: binary, structured and batch requests into raw events.

Only the attributes of the choreokit contract are read; everything else a
caller sends (other headers, other extension attributes) is reported back as
ignored and never reaches Kafka.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import unquote

import pydantic_core
from starlette.requests import ClientDisconnect, Request

from choreokit.events import (
    MAX_ATTRIBUTE_LENGTH,
    attribute_problem,
    is_dataversion,
    parse_event_time,
)
from choreokit.events.wire import BATCH_JSON, JSON, SPECVERSION, STRUCTURED_JSON
from choreokit.services.gateway._problems import ErrorItem, Problem, ProblemKind

MAX_ID_LENGTH = 256
"""Longest ``id``, ``correlationid`` or ``causationid`` a caller may send."""


REQUIRED = ("specversion", "id", "source", "type")
FORWARDED = (
    "id",
    "source",
    "type",
    "time",
    "dataversion",
    "correlationid",
    "causationid",
    "traceparent",
    "tracestate",
)
_CHECKED_ONLY = ("specversion", "datacontenttype")
_KNOWN = frozenset((*FORWARDED, *_CHECKED_ONLY))
_IDS = frozenset({"id", "correlationid", "causationid"})
_CE_PREFIX = "ce-"
_BINARY_HINT = (
    "binary mode needs the headers ce-specversion: 1.0, ce-id, ce-source and ce-type "
    "(or send the event as application/cloudevents+json)"
)


class Mode(StrEnum):
    """The content modes of the CloudEvents HTTP binding."""

    BINARY = "binary"
    STRUCTURED = "structured"
    BATCH = "batch"


_MODES = {JSON: Mode.BINARY, STRUCTURED_JSON: Mode.STRUCTURED, BATCH_JSON: Mode.BATCH}


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()
"""Stands for an absent ``data`` member."""


@dataclass(frozen=True, slots=True)
class RawEvent:
    """One event as the caller sent it, its envelope checked, its payload not yet.

    Attributes:
        attributes: The contract's attributes, as text (``dataversion`` included).
        ignored: Names of attributes that were sent but are not forwarded.
        data: The parsed ``data`` member (structured and batch mode), or ``MISSING``.
        body: The payload bytes (binary mode), else ``None``.
    """

    attributes: Mapping[str, str]
    ignored: tuple[str, ...] = ()
    data: Any = field(default=MISSING)
    body: bytes | None = None

    @property
    def type(self) -> str:
        """The ``type`` attribute."""
        return self.attributes["type"]

    @property
    def version(self) -> int:
        """The ``dataversion`` extension as a number (1 when absent)."""
        return int(self.attributes.get("dataversion", "1"))


def mode_of(content_type: str | None) -> Mode:
    """Choose the content mode from the request's ``Content-Type``.

    Raises:
        Problem: 415 for a missing or unsupported content type.
    """
    supported = ", ".join(_MODES)
    if not content_type:
        raise Problem(
            ProblemKind.UNSUPPORTED_MEDIA_TYPE,
            f"Content-Type is missing; send one of {supported}",
        )
    media, *params = (part.strip() for part in content_type.split(";"))
    mode = _MODES.get(media.lower())
    if mode is None:
        raise Problem(
            ProblemKind.UNSUPPORTED_MEDIA_TYPE,
            f"Content-Type {content_type[:100]!r} is not supported; send one of {supported}",
        )
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() != "utf-8":
            raise Problem(
                ProblemKind.UNSUPPORTED_MEDIA_TYPE,
                f"charset {value.strip()[:40]!r} is not supported; send UTF-8",
            )
    return mode


async def read_body(request: Request, limit: int) -> bytes:
    """Read the request body, refusing it as soon as it exceeds ``limit`` bytes.

    A declared ``Content-Length`` over the limit is refused before reading; a
    chunked body is counted while it streams in and never buffered past the limit.

    Raises:
        Problem: 413 over the limit, 400 for a bad ``Content-Length`` or a body cut short.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise Problem(ProblemKind.MALFORMED, "Content-Length is not a number")
        if int(declared) > limit:
            raise _too_large(limit)
    body = bytearray()
    try:
        async for chunk in request.stream():
            if len(body) + len(chunk) > limit:
                raise _too_large(limit)
            body += chunk
    except ClientDisconnect:
        raise Problem(ProblemKind.MALFORMED, "the client went away before the body") from None
    return bytes(body)


def _too_large(limit: int) -> Problem:
    return Problem(
        ProblemKind.TOO_LARGE,
        f"the body is larger than {limit} bytes; send fewer or smaller events",
    )


def parse(mode: Mode, headers: Sequence[tuple[bytes, bytes]], body: bytes) -> list[RawEvent]:
    """Turn a request into raw events.

    Raises:
        Problem: 400 or 415 with an error item per failing event (batch mode:
            every element is checked before answering).
    """
    http = _trace_headers(headers)
    if mode is Mode.BINARY:
        try:
            return [_binary(headers, body, http)]
        except _InvalidEventError as exc:
            raise Problem.of(exc.item) from None
    doc = _json(body)
    if mode is Mode.STRUCTURED:
        try:
            return [_structured(doc, http)]
        except _InvalidEventError as exc:
            raise Problem.of(exc.item) from None
    if not isinstance(doc, list):
        raise Problem(ProblemKind.MALFORMED, "a batch must be a JSON array of events")
    events: list[RawEvent] = []
    errors: list[ErrorItem] = []
    for index, element in enumerate(doc):
        try:
            events.append(_structured(element, http))
        except _InvalidEventError as exc:
            errors.append(exc.item.at(index))
    if errors:
        raise Problem.combine(errors, total=len(doc))
    return events


class _InvalidEventError(Exception):
    def __init__(self, item: ErrorItem) -> None:
        self.item = item
        super().__init__(item.message)


def _malformed(message: str, attribute: str | None = None) -> _InvalidEventError:
    return _InvalidEventError(ErrorItem(message, ProblemKind.MALFORMED, attribute=attribute))


def _json(body: bytes) -> Any:
    if not body:
        raise Problem(ProblemKind.MALFORMED, "the body is empty")
    try:
        return pydantic_core.from_json(body)
    except ValueError as exc:
        raise Problem(ProblemKind.MALFORMED, f"the body is not JSON: {exc}") from None


def _trace_headers(headers: Sequence[tuple[bytes, bytes]]) -> dict[str, str]:
    found: dict[str, str] = {}
    for raw_name, raw_value in headers:
        name = raw_name.decode("latin-1").lower()
        if name in ("traceparent", "tracestate"):
            found[name] = raw_value.decode("latin-1")
    return found


def _binary(headers: Sequence[tuple[bytes, bytes]], body: bytes, http: dict[str, str]) -> RawEvent:
    attributes: dict[str, str] = {}
    ignored: list[str] = []
    for raw_name, raw_value in headers:
        name = raw_name.decode("latin-1").lower()
        if not name.startswith(_CE_PREFIX):
            continue
        attribute = name[len(_CE_PREFIX) :]
        if attribute in attributes or attribute in ignored:
            raise _malformed(f"header {name} appears more than once", attribute)
        if attribute not in _KNOWN or attribute in ("traceparent", "tracestate"):
            ignored.append(attribute)
            continue
        try:
            text = raw_value.decode("ascii")
            attributes[attribute] = unquote(text, errors="strict")
        except UnicodeDecodeError:
            raise _malformed(
                f"header {name} must be ASCII, with other characters percent-encoded (UTF-8)",
                attribute,
            ) from None
    if "specversion" not in attributes:
        raise _malformed(_BINARY_HINT, "specversion")
    attributes.pop("datacontenttype", None)  # the Content-Type header is the data's type
    attributes.update(http)
    _check(attributes)
    if not body:
        raise _InvalidEventError(
            ErrorItem(
                "the body (the event's data) is empty",
                ProblemKind.INVALID_EVENT,
                path="(root)",
                rule="missing",
            )
        )
    return RawEvent(attributes, tuple(sorted(ignored)), body=body)


def _structured(doc: Any, http: dict[str, str]) -> RawEvent:
    if not isinstance(doc, dict):
        raise _malformed("an event must be a JSON object")
    if "data_base64" in doc:
        raise _InvalidEventError(
            ErrorItem(
                "data_base64 (binary data) is not supported; send JSON in 'data'",
                ProblemKind.UNSUPPORTED_MEDIA_TYPE,
                attribute="data_base64",
            )
        )
    attributes: dict[str, str] = {}
    ignored: list[str] = []
    for name, value in doc.items():
        if name == "data":
            continue
        if name not in _KNOWN:
            ignored.append(name)
            continue
        number = isinstance(value, int) and not isinstance(value, bool)
        if name == "dataversion" and number:
            attributes[name] = str(value)
        elif isinstance(value, str):
            attributes[name] = value
        else:
            raise _malformed(f"attribute {name!r} must be a string", name)
    content_type = attributes.pop("datacontenttype", JSON)
    if content_type.split(";")[0].strip().lower() != JSON:
        raise _InvalidEventError(
            ErrorItem(
                f"datacontenttype {content_type[:100]!r} is not supported; "
                "data must be application/json",
                ProblemKind.UNSUPPORTED_MEDIA_TYPE,
                attribute="datacontenttype",
            )
        )
    for name, value in http.items():
        attributes.setdefault(name, value)
    _check(attributes)
    return RawEvent(attributes, tuple(sorted(ignored)), data=doc.get("data", MISSING))


def _check(attributes: dict[str, str]) -> None:
    for name in REQUIRED:
        if not attributes.get(name, "").strip():
            raise _malformed(f"attribute {name!r} is missing", name)
    if attributes["specversion"] != SPECVERSION:
        raise _malformed(
            f"specversion {attributes['specversion'][:16]!r} is not supported; send "
            f"{SPECVERSION!r}",
            "specversion",
        )
    for name, value in attributes.items():
        limit = MAX_ID_LENGTH if name in _IDS else MAX_ATTRIBUTE_LENGTH
        problem = attribute_problem(value, max_length=limit)
        if problem is not None:
            raise _malformed(f"attribute {name!r} {problem}", name)
    version = attributes.get("dataversion")
    if version is not None and not is_dataversion(version):
        raise _malformed(
            f"dataversion must be a positive integer such as '2', not {version[:16]!r}",
            "dataversion",
        )
    time = attributes.get("time")
    if time is not None:
        try:
            parse_event_time(time)
        except ValueError as exc:
            raise _malformed(f"time {exc}", "time") from None
    for name in ("correlationid", "causationid"):
        if name in attributes and not attributes[name].strip():
            raise _malformed(f"attribute {name!r} is empty; leave it out instead", name)
