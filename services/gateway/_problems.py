"""Every answer but 202 is an RFC 9457 problem: a kind, a detail, and the errors behind it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from fastapi.responses import JSONResponse

from choreokit.events import ChoreoError
from choreokit.services.runtime.problems import problem, problem_document

TYPE_PREFIX = "urn:choreokit:problem:"
MAX_ERRORS = 100
"""Most error items in one answer (a batch of invalid events could list thousands)."""


class ProblemKind(Enum):
    """The answers the gateway gives besides 202, with their status and type."""

    MALFORMED = (400, "malformed", "The request is not a well-formed CloudEvent")
    UNAUTHENTICATED = (401, "unauthenticated", "Missing or invalid API key")
    FORBIDDEN = (403, "forbidden", "This API key may not publish that")
    NOT_FOUND = (404, "not-found", "No such resource")
    METHOD_NOT_ALLOWED = (405, "method-not-allowed", "Method not allowed")
    ID_REUSED = (409, "id-reused", "The event id was already used for another event")
    TOO_LARGE = (413, "too-large", "The request is too large")
    UNSUPPORTED_MEDIA_TYPE = (415, "unsupported-media-type", "Unsupported content type")
    INVALID_EVENT = (422, "invalid-event", "The event does not match a declared schema")
    RATE_LIMITED = (429, "rate-limited", "Too many requests for this API key")
    INTERNAL = (500, "internal", "The gateway failed; the event was not published")
    UNAVAILABLE = (503, "broker-unavailable", "The event broker cannot be reached")

    def __init__(self, status: int, slug: str, title: str) -> None:
        self.status = status
        self.slug = slug
        self.title = title

    @property
    def type_uri(self) -> str:
        """The problem ``type`` member: a URN naming the kind."""
        return TYPE_PREFIX + self.slug


# When events of one batch fail for different reasons, the answer's status is the
# first of these that occurs: a broken request before a refused one before an invalid one.
PRECEDENCE = (
    ProblemKind.MALFORMED,
    ProblemKind.UNSUPPORTED_MEDIA_TYPE,
    ProblemKind.FORBIDDEN,
    ProblemKind.INVALID_EVENT,
)


@dataclass(frozen=True, slots=True)
class ErrorItem:
    """One thing wrong with a request, pointing at where it is.

    Attributes:
        message: What is wrong and what to do.
        kind: The problem kind this item alone would be answered with.
        index: Position of the event in a batch (0 outside batch mode).
        attribute: The CloudEvents attribute concerned, if any.
        path: Dotted path of the payload field concerned (``lines.0.quantity``).
        rule: The rule that failed, e.g. ``greater_than`` or ``missing``.
    """

    message: str
    kind: ProblemKind
    index: int | None = None
    attribute: str | None = None
    path: str | None = None
    rule: str | None = None

    def at(self, index: int) -> ErrorItem:
        """Return this item placed at event ``index`` of the request."""
        return ErrorItem(self.message, self.kind, index, self.attribute, self.path, self.rule)

    def as_json(self) -> dict[str, Any]:
        """The item as it appears under ``errors`` in a problem document."""
        out: dict[str, Any] = {"status": self.kind.status, "message": self.message}
        for name in ("index", "attribute", "path", "rule"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out


class Problem(ChoreoError):  # noqa: N818 - RFC 9457's name; an answer, raised to unwind
    """An answer other than 202; raised anywhere while a request is handled.

    Attributes:
        kind: Which problem, hence the status code.
        detail: What happened to this request and what to do about it.
        errors: The individual errors (fields, attributes, events of a batch).
        headers: Extra response headers (``Retry-After``, ``WWW-Authenticate``).
    """

    def __init__(
        self,
        kind: ProblemKind,
        detail: str,
        *,
        errors: Sequence[ErrorItem] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.kind = kind
        self.detail = detail
        self.errors = tuple(errors)
        self.headers = dict(headers or {})
        super().__init__(detail)

    @classmethod
    def of(cls, item: ErrorItem) -> Problem:
        """The problem a single error item makes."""
        return cls(item.kind, item.message, errors=(item,))

    @classmethod
    def combine(cls, items: Sequence[ErrorItem], total: int) -> Problem:
        """The problem of a request whose events failed for the reasons in ``items``."""
        kinds = {item.kind for item in items}
        kind = next(k for k in (*PRECEDENCE, *ProblemKind) if k in kinds)
        failing = sorted({item.index or 0 for item in items})
        if total == 1:
            detail = items[0].message if len(items) == 1 else f"{len(items)} errors; see 'errors'"
        else:
            detail = (
                f"{len(failing)} of {total} events are not accepted (first: index {failing[0]}); "
                "nothing was published; fix them and send the batch again"
            )
        return cls(kind, detail, errors=items[:MAX_ERRORS])

    def document(self, instance: str | None = None) -> dict[str, Any]:
        """The RFC 9457 problem document."""
        return problem_document(**self._members(instance))

    def response(self, instance: str | None = None) -> JSONResponse:
        """The HTTP response carrying this problem."""
        return problem(**self._members(instance), headers=self.headers)

    def _members(self, instance: str | None) -> dict[str, Any]:
        return {
            "status": self.kind.status,
            "title": self.kind.title,
            "detail": self.detail,
            "type": self.kind.type_uri,
            "instance": instance,
            "errors": [item.as_json() for item in self.errors] if self.errors else None,
        }
