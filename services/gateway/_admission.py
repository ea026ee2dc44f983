"""Admission: may this key publish this event, is it a declared type and version, is it valid?

Admission also decides the event's identity on Kafka. Ids are namespaced by
key (``<key id>:<id>``), because consumers deduplicate by ``ce_id`` alone
while CloudEvents only makes ``id`` unique per source: two partners both
numbering their events 1, 2, 3 must not silence each other. A correlation id
is *owned* by the key that started the flow through the gateway, which is
what the same namespace expresses: an untrusted key's correlation ids are
namespaced too, so it can start and continue its own flows but never join
one it did not start. Trusted keys (systems of ours) may join any flow.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from pydantic import ValidationError

from choreokit.events import (
    Event,
    Registry,
    UnknownEventTypeError,
    UnknownEventVersionError,
    encode_payload,
    error_text,
    toolkit_namespace,
)
from choreokit.services.gateway._binding import MISSING, RawEvent
from choreokit.services.gateway._keys import ApiKey, normalise_source
from choreokit.services.gateway._problems import ErrorItem, ProblemKind

MAX_ERRORS_PER_EVENT = 10


@dataclass(frozen=True, slots=True)
class Admitted:
    """An event that may be published, with its identity on Kafka.

    Attributes:
        event: The validated payload.
        received_id: The ``id`` the caller sent.
        event_id: The ``ce_id`` it gets on Kafka (namespaced by key).
        correlation_id: The flow it belongs to.
        causation_id: The event that caused it, if the caller named one.
        source: The caller's ``source``.
        time: The caller's ``time``, or ``None`` for now.
        traceparent: The caller's trace context, if any.
        tracestate: The caller's trace state, if any.
        ignored: Attributes the caller sent that are not forwarded.
        fingerprint: Digest of everything but ``time``: a retry must match it.
        payload: The record value (``encode_payload(event)``, computed once).
    """

    event: Event
    received_id: str
    event_id: str
    correlation_id: str
    causation_id: str | None
    source: str
    time: datetime | None
    traceparent: str | None
    tracestate: str | None
    ignored: tuple[str, ...]
    fingerprint: bytes
    payload: bytes


class RefusedError(Exception):
    """An event is not admitted; ``items`` say why."""

    def __init__(self, items: list[ErrorItem]) -> None:
        self.items = items
        super().__init__(items[0].message)


def namespaced(key: ApiKey, value: str) -> str:
    """``value`` inside the key's namespace (unchanged if it already is)."""
    prefix = f"{key.id}:"
    return value if value.startswith(prefix) else prefix + value


def admit(
    raw: RawEvent,
    key: ApiKey,
    registry: Registry,
    flow_enders: frozenset[str] = frozenset(),
) -> Admitted:
    """Check ``raw`` against the key's grants and the registry, and give it its identity.

    Args:
        raw: The event as sent.
        key: The caller's key.
        registry: The declared events.
        flow_enders: Types that end or compensate a flow (the declared sagas'
            success and failure ends and compensations): an untrusted key may
            publish them only inside a flow of its own, never to start one.

    Raises:
        RefusedError: 403 (type, source or flow not granted) or 422 (unknown type
            or version, invalid payload), with the field paths and rules.
    """
    event_type = raw.type
    source = normalise_source(raw.attributes["source"])
    attrs = raw.attributes
    continues = bool(attrs.get("correlationid") or attrs.get("causationid"))
    if key.reserved_by_wildcard(event_type):
        raise RefusedError(
            [
                ErrorItem(
                    f"key {key.id!r} may not publish {event_type!r}: it is one of the toolkit's "
                    f"own report types ({toolkit_namespace(event_type)}*), which the saga "
                    "observer trusts, and a wildcard grant does not cover those; a key that "
                    f"must publish it needs a grant naming it ({event_type!r} or "
                    f"'{toolkit_namespace(event_type)}*')",
                    ProblemKind.FORBIDDEN,
                    attribute="type",
                    rule="toolkit_type",
                )
            ]
        )
    if not key.may_publish(event_type):
        raise RefusedError([_item(f"key {key.id!r} may not publish {event_type!r}", "type")])
    if continues and not key.may_continue(event_type):
        raise RefusedError(
            [
                _item(
                    f"key {key.id!r} may publish {event_type!r} only to start a flow; "
                    "leave out correlationid and causationid",
                    "correlationid",
                )
            ]
        )
    if not key.trusted and not continues and event_type in flow_enders:
        raise RefusedError(
            [
                _item(
                    f"{event_type!r} ends or compensates a flow: key {key.id!r} may publish "
                    "it only in a flow it started; send that flow's correlationid",
                    "correlationid",
                )
            ]
        )
    if not key.may_use_source(source):
        raise RefusedError(
            [_item(f"key {key.id!r} may not publish as source {source[:200]!r}", "source")]
        )
    try:
        model = registry.model(event_type, raw.version)
    except UnknownEventTypeError:
        raise RefusedError(
            [
                ErrorItem(
                    f"no event type {event_type!r} is declared; known: "
                    f"{', '.join(registry.types()) or 'none'}",
                    ProblemKind.INVALID_EVENT,
                    attribute="type",
                    rule="unknown_type",
                )
            ]
        ) from None
    except UnknownEventVersionError as exc:
        raise RefusedError(
            [
                ErrorItem(
                    f"{event_type} has no version {raw.version}; declared versions: "
                    f"{', '.join(str(v) for v in exc.known)} (set dataversion)",
                    ProblemKind.INVALID_EVENT,
                    attribute="dataversion",
                    rule="unknown_version",
                )
            ]
        ) from None
    event = _validate(model, raw)
    event_id = namespaced(key, attrs["id"])
    correlation = attrs.get("correlationid")
    causation = attrs.get("causationid")
    if not key.trusted:
        correlation = namespaced(key, correlation) if correlation else None
        causation = namespaced(key, causation) if causation else None
    correlation = correlation or event_id
    payload = encode_payload(event)
    fingerprint = hashlib.sha256(
        b"\x1f".join(
            part.encode()
            for part in (
                event_type,
                str(raw.version),
                source,
                correlation,
                causation or "",
            )
        )
        + b"\x1e"
        + payload
    ).digest()
    time = attrs.get("time")
    return Admitted(
        event=event,
        received_id=attrs["id"],
        event_id=event_id,
        correlation_id=correlation,
        causation_id=causation,
        source=source,
        time=datetime.fromisoformat(time) if time else None,
        traceparent=attrs.get("traceparent"),
        tracestate=attrs.get("tracestate"),
        ignored=raw.ignored,
        fingerprint=fingerprint,
        payload=payload,
    )


def _item(message: str, attribute: str) -> ErrorItem:
    return ErrorItem(message, ProblemKind.FORBIDDEN, attribute=attribute, rule="not_granted")


def _validate(model: type[Event], raw: RawEvent) -> Event:
    if raw.body is None and raw.data is MISSING:
        raise RefusedError(
            [
                ErrorItem(
                    "the event has no 'data'",
                    ProblemKind.INVALID_EVENT,
                    attribute="data",
                    path="(root)",
                    rule="missing",
                )
            ]
        )
    try:
        if raw.body is not None:
            return model.model_validate_json(raw.body)
        return model.model_validate(raw.data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        if errors and errors[0]["type"] == "json_invalid":
            raise RefusedError(
                [
                    ErrorItem(
                        f"the body is not JSON: {errors[0]['msg']}",
                        ProblemKind.MALFORMED,
                        rule="json_invalid",
                    )
                ]
            ) from None
        info = model.event_info()
        items = [
            ErrorItem(
                f"{info}: {'.'.join(str(p) for p in error['loc']) or '(root)'}: "
                f"{error_text(error, model)}",
                ProblemKind.INVALID_EVENT,
                path=".".join(str(p) for p in error["loc"]) or "(root)",
                rule=error["type"],
            )
            for error in errors[:MAX_ERRORS_PER_EVENT]
        ]
        raise RefusedError(items) from None
