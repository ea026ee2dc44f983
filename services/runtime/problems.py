"""RFC 9457 problem details: the one way every HTTP app here answers an error."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi.responses import JSONResponse

PROBLEM_JSON = "application/problem+json"
"""The media type of an RFC 9457 problem document."""


def problem_document(
    status: int,
    title: str,
    detail: str | None = None,
    *,
    type: str = "about:blank",  # noqa: A002 - RFC 9457's member name
    instance: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """An RFC 9457 problem document; members that are ``None`` are left out.

    Args:
        status: The HTTP status code it answers with.
        title: The short summary of the problem's kind.
        detail: What happened to this request, and what to do about it.
        type: A URI naming the kind of problem.
        instance: The request path it is about.
        extra: Extension members, e.g. ``errors``.
    """
    body: dict[str, Any] = {"type": type, "title": title, "status": status}
    if detail is not None:
        body["detail"] = detail
    if instance is not None:
        body["instance"] = instance
    body.update((name, value) for name, value in extra.items() if value is not None)
    return body


def problem(
    status: int,
    title: str,
    detail: str | None = None,
    *,
    type: str = "about:blank",  # noqa: A002 - RFC 9457's member name
    instance: str | None = None,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """An RFC 9457 problem details response (``application/problem+json``).

    The arguments are :func:`problem_document`'s, plus response ``headers``
    (``Retry-After``, ``WWW-Authenticate``).
    """
    body = problem_document(status, title, detail, type=type, instance=instance, **extra)
    return JSONResponse(
        body, status_code=status, headers=dict(headers or {}), media_type=PROBLEM_JSON
    )
