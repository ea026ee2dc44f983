"""The gateway's HTTP surface: routes, problem answers for every error, the OpenAPI document."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from choreokit.events import MAX_ATTRIBUTE_LENGTH, error_text
from choreokit.events.wire import BATCH_JSON, JSON, STRUCTURED_JSON
from choreokit.services.gateway._binding import MAX_ID_LENGTH
from choreokit.services.gateway._gateway import Gateway
from choreokit.services.gateway._problems import Problem, ProblemKind
from choreokit.services.runtime.http import health_response, metrics_response
from choreokit.services.runtime.problems import PROBLEM_JSON

logger = logging.getLogger("choreokit.gateway")

_STATUS_KINDS = {kind.status: kind for kind in ProblemKind}
_ERROR_ANSWERS = (
    ProblemKind.MALFORMED,
    ProblemKind.UNAUTHENTICATED,
    ProblemKind.FORBIDDEN,
    ProblemKind.ID_REUSED,
    ProblemKind.TOO_LARGE,
    ProblemKind.UNSUPPORTED_MEDIA_TYPE,
    ProblemKind.INVALID_EVENT,
    ProblemKind.RATE_LIMITED,
    ProblemKind.UNAVAILABLE,
)
_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before retrying.",
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    }
}
_DESCRIPTION = """\
Publish CloudEvents 1.0 to choreokit's Kafka topics over the CloudEvents HTTP binding.

* **binary mode**: `Content-Type: application/json`, the payload as the body,
  the attributes as `ce-*` headers (`ce-specversion`, `ce-id`, `ce-source`,
  `ce-type`, optionally `ce-dataversion`, `ce-time`, `ce-correlationid`,
  `ce-causationid`; `traceparent`/`tracestate` as W3C headers);
* **structured mode**: `Content-Type: application/cloudevents+json`, one event
  as a JSON object with its `data`;
* **batch mode**: `Content-Type: application/cloudevents-batch+json`, a JSON
  array of events; all or nothing.

Every event is validated against its declared schema (`type`, `dataversion`,
payload) and published with the caller's `id` in the key's namespace
(`<key id>:<id>`); repeating a request within the dedup window publishes
nothing twice. Errors are RFC 9457 problem documents.
"""


def build_api(gateway: Gateway) -> FastAPI:
    """The FastAPI application of ``gateway``."""
    app = FastAPI(
        title="choreokit gateway",
        version="1",
        description=_DESCRIPTION,
        docs_url=None,
        redoc_url=None,
    )

    @app.post(
        "/events",
        status_code=202,
        summary="Publish one event or a batch",
        response_model=None,
        responses=_event_responses(),
        openapi_extra=_event_request(gateway),
    )
    async def post_events(request: Request) -> Response:
        return await gateway.accept(request)

    @app.get(
        "/healthz",
        summary="Liveness and whether the broker answers",
        response_model=None,
        responses={
            200: {"description": "Ready", "content": {JSON: {"schema": _HEALTH}}},
            503: {
                "description": "The broker is unreachable",
                "content": {JSON: {"schema": _HEALTH}},
            },
        },
    )
    async def healthz() -> Response:
        return health_response(gateway.link.up, kafka=gateway.link.reason)

    @app.get(
        "/metrics",
        summary="Prometheus metrics",
        response_model=None,
        responses={200: {"description": "Prometheus text", "content": {"text/plain": {}}}},
    )
    async def metrics() -> Response:
        return metrics_response(gateway.metrics.registry)

    @app.exception_handler(HTTPException)
    async def http_problem(request: Request, exc: HTTPException) -> Response:
        kind = _STATUS_KINDS.get(exc.status_code, ProblemKind.MALFORMED)
        detail = exc.detail if isinstance(exc.detail, str) else kind.title
        return Problem(kind, detail, headers=exc.headers).response(request.url.path)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        # str(exc) repeats each refused input; say where and which rule only.
        detail = "; ".join(
            f"{'.'.join(str(p) for p in error['loc'])}: {error_text(error)}"
            for error in exc.errors()[:5]
        )
        return Problem(ProblemKind.MALFORMED, detail[:500]).response(request.url.path)

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> Response:
        logger.error(
            "unexpected error answering %s %s", request.method, request.url.path, exc_info=exc
        )
        return Problem(
            ProblemKind.INTERNAL, f"unexpected {type(exc).__name__}; nothing was published"
        ).response(request.url.path)

    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = original()
            components = document.setdefault("components", {})
            components.setdefault("schemas", {}).update(_COMPONENT_SCHEMAS)
            components["securitySchemes"] = {
                "apiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key: 'ck_<key id>.<secret>'.",
                }
            }
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


_HEALTH = {
    "type": "object",
    "required": ["status", "kafka"],
    "properties": {
        "status": {"type": "string", "enum": ["ok", "unavailable"]},
        "kafka": {"type": "string"},
    },
}

_COMPONENT_SCHEMAS: dict[str, Any] = {
    "ProblemError": {
        "type": "object",
        "required": ["status", "message"],
        "properties": {
            "status": {"type": "integer", "description": "The status this error alone gets."},
            "message": {"type": "string"},
            "index": {"type": "integer", "description": "The event's position in a batch."},
            "attribute": {"type": "string", "description": "The CloudEvents attribute."},
            "path": {"type": "string", "description": "The payload field, dotted."},
            "rule": {"type": "string", "description": "The rule that failed."},
        },
    },
    "Problem": {
        "type": "object",
        "description": "RFC 9457 problem details.",
        "required": ["type", "title", "status", "detail"],
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "instance": {"type": "string"},
            "errors": {"type": "array", "items": {"$ref": "#/components/schemas/ProblemError"}},
        },
    },
    "Accepted": {
        "type": "object",
        "required": ["ids", "events"],
        "properties": {
            "ids": {
                "type": "array",
                "items": {"type": "string"},
                "description": "The events' ce_id on Kafka, in request order.",
            },
            "events": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": [
                        "id",
                        "received_id",
                        "correlationid",
                        "topic",
                        "partition",
                        "offset",
                        "duplicate",
                        "ignored",
                    ],
                    "properties": {
                        "id": {"type": "string"},
                        "received_id": {"type": "string"},
                        "correlationid": {"type": "string"},
                        "topic": {"type": "string"},
                        "partition": {"type": "integer"},
                        "offset": {"type": "integer"},
                        "duplicate": {"type": "boolean"},
                        "ignored": {"type": "array", "items": {"type": "string"}},
                    },
                },
            },
        },
    },
    "CloudEvent": {
        "type": "object",
        "description": "A CloudEvents 1.0 event in structured JSON form.",
        "required": ["specversion", "id", "source", "type"],
        "properties": {
            "specversion": {"type": "string", "enum": ["1.0"]},
            "id": {"type": "string", "minLength": 1, "maxLength": MAX_ID_LENGTH},
            "source": {"type": "string", "minLength": 1, "maxLength": MAX_ATTRIBUTE_LENGTH},
            "type": {"type": "string", "minLength": 1, "maxLength": MAX_ATTRIBUTE_LENGTH},
            "dataversion": {"type": "string", "pattern": "^[1-9][0-9]{0,8}$"},
            "time": {"type": "string", "format": "date-time"},
            "datacontenttype": {"type": "string", "enum": [JSON]},
            "correlationid": {"type": "string", "minLength": 1, "maxLength": MAX_ID_LENGTH},
            "causationid": {"type": "string", "minLength": 1, "maxLength": MAX_ID_LENGTH},
            "traceparent": {"type": "string"},
            "tracestate": {"type": "string"},
            "data": {"description": "The payload, valid against the type's JSON Schema."},
        },
    },
}


def _event_request(gateway: Gateway) -> dict[str, Any]:
    header = [
        ("ce-specversion", "Binary mode: '1.0'."),
        ("ce-id", "Binary mode: the event id, unique per API key."),
        ("ce-source", "Binary mode: the producing system (a URI reference)."),
        ("ce-type", "Binary mode: the event type, e.g. order.placed."),
        ("ce-dataversion", "Binary mode: the schema's major version (default 1)."),
        ("ce-time", "Binary mode: RFC 3339 timestamp."),
        ("ce-correlationid", "Binary mode: the flow to join (default: a new flow)."),
        ("ce-causationid", "Binary mode: the id of the event that caused this one."),
        ("traceparent", "W3C trace context; honoured for trusted keys, else linked."),
        ("tracestate", "W3C trace state."),
    ]
    return {
        "security": [{"apiKey": []}],
        "parameters": [
            {
                "name": name,
                "in": "header",
                "required": False,
                "description": text,
                "schema": {"type": "string"},
            }
            for name, text in header
        ],
        "requestBody": {
            "required": True,
            "description": (
                f"At most {int(gateway.settings.max_body)} bytes and "
                f"{gateway.settings.max_batch} events per batch."
            ),
            "content": {
                JSON: {"schema": {"description": "The event's payload (binary mode)."}},
                STRUCTURED_JSON: {"schema": {"$ref": "#/components/schemas/CloudEvent"}},
                BATCH_JSON: {
                    "schema": {
                        "type": "array",
                        "maxItems": gateway.settings.max_batch,
                        "items": {"$ref": "#/components/schemas/CloudEvent"},
                    }
                },
            },
        },
    }


def _event_responses() -> dict[int | str, dict[str, Any]]:
    problem = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    answers: dict[int | str, dict[str, Any]] = {
        202: {
            "description": "Every event is published (or was already, within the dedup window).",
            "content": {JSON: {"schema": {"$ref": "#/components/schemas/Accepted"}}},
        }
    }
    for kind in _ERROR_ANSWERS:
        answer: dict[str, Any] = {"description": kind.title, "content": problem}
        if kind in (ProblemKind.RATE_LIMITED, ProblemKind.UNAVAILABLE):
            answer["headers"] = _RETRY_AFTER
        if kind is ProblemKind.UNAUTHENTICATED:
            answer["headers"] = {
                "WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}
            }
        answers[kind.status] = answer
    return answers
