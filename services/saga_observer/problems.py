"""Every error answer is an RFC 9457 problem (``application/problem+json``) saying what to fix."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.status import HTTP_404_NOT_FOUND

from choreokit.services.runtime.problems import problem as problem_response

logger = logging.getLogger("choreokit.observer.api")
_TITLES = {
    400: "Bad request",
    404: "Not found",
    405: "Method not allowed",
    422: "Invalid request",
    500: "Internal error",
    503: "Unavailable",
}


def problem(
    status: int,
    detail: str,
    *,
    instance: str | None = None,
    errors: list[dict[str, Any]] | None = None,
) -> JSONResponse:
    """A problem answer (shaped as :class:`~choreokit.services.saga_observer.views.Problem`)."""
    return problem_response(
        status, _TITLES.get(status, "Error"), detail, instance=instance, errors=errors
    )


def install(app: FastAPI) -> None:
    """Answer validation errors, HTTP errors and crashes as problems."""

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = []
        for error in exc.errors():
            where = ".".join(str(p) for p in error.get("loc", ()) if p not in ("query", "path"))
            errors.append(
                {"parameter": where, "message": error.get("msg", ""), "type": error.get("type")}
            )
        detail = "; ".join(f"{e['parameter']}: {e['message']}" for e in errors) or "invalid request"
        return problem(422, detail, instance=request.url.path, errors=errors)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else "see the documentation at /api/docs"
        if exc.status_code == HTTP_404_NOT_FOUND and detail == "Not Found":
            detail = f"nothing at {request.url.path}; the API is described at /api/docs"
        answer = problem(exc.status_code, detail, instance=request.url.path)
        for name, value in (exc.headers or {}).items():  # WWW-Authenticate, Retry-After
            answer.headers[name] = value
        return answer

    @app.exception_handler(Exception)
    async def crash(request: Request, exc: Exception) -> JSONResponse:
        logger.error("request %s failed", request.url.path, exc_info=exc)
        return problem(
            500,
            f"the observer failed: {type(exc).__name__}; see its log",
            instance=request.url.path,
        )
