"""The HTTP face: the JSON API under ``/api/``, ``/healthz``, ``/metrics`` and the UI at ``/``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Protocol

from fastapi import Depends, FastAPI, Query, Response
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException

from choreokit.events import parse_duration
from choreokit.services.runtime.access import AccessPolicy, Role, install_access, require
from choreokit.services.runtime.http import health_response, metrics_response
from choreokit.services.saga_observer import problems
from choreokit.services.saga_observer.audit import AuditLog
from choreokit.services.saga_observer.catalog import SagaCatalog
from choreokit.services.saga_observer.dead_letter_api import Replayer, dead_letter_routes
from choreokit.services.saga_observer.judge import Status
from choreokit.services.saga_observer.metrics import ObserverMetrics
from choreokit.services.saga_observer.queries import FlowFilter, Queries, Sort, saga_view
from choreokit.services.saga_observer.records import micros
from choreokit.services.saga_observer.saga_map import FAILURE_STATUSES, SagaMaps
from choreokit.services.saga_observer.views import (
    AuditPage,
    AuditView,
    Counts,
    DeadLetterPage,
    EventDetail,
    Facets,
    FailurePatternsView,
    FlowDetail,
    FlowPage,
    Health,
    InstanceView,
    Problem,
    RejectPage,
    SagaMapView,
    SagaView,
    Stats,
    TopologyView,
)

UI_DIR = Path(__file__).parent / "ui"
_ID = 1024
_Responses = dict[int | str, dict[str, Any]]
_NOT_FOUND: _Responses = {404: {"model": Problem, "description": "Unknown id"}}
_INVALID: _Responses = {422: {"model": Problem, "description": "Invalid parameters"}}
_BAD: _Responses = {400: {"model": Problem, "description": "Contradictory parameters"}}
_UNAUTHORIZED: _Responses = {
    401: {"model": Problem, "description": "No valid token"},
    403: {"model": Problem, "description": "The token's role is too low"},
}


class Instance(Protocol):
    """What the API shows of the running instance."""

    @property
    def client_id(self) -> str:
        """This instance's Kafka client id."""
        ...

    @property
    def group(self) -> str:
        """The consumer group."""
        ...

    def consumer_state(self) -> str:
        """``running``, ``starting`` or ``stopped``."""
        ...

    def assignment(self) -> list[str]:
        """The partitions it reads, as ``topic[n]``."""
        ...

    def lag(self) -> int:
        """Records not yet applied on its partitions."""
        ...


Limit = Annotated[
    int,
    Query(ge=1, description="Page size (at most CHOREO_OBSERVER_MAX_PAGE_SIZE, 200 by default)."),
]
Offset = Annotated[int, Query(ge=0, le=10_000_000, description="Items to skip.")]
Since = Annotated[
    datetime | None, Query(description="From this moment on (RFC 3339; without an offset, UTC).")
]
Until = Annotated[datetime | None, Query(description="Before this moment.")]
MAX_WAIT = timedelta(days=365)
"""The longest ``waited_more_than`` taken."""
_DURATION_TEXT = r"^\s*\d{1,12}(\.\d{1,6})?\s*(ms|s|m|h)?\s*$"


def _clock() -> int:
    return micros(datetime.now(UTC))


def build_api(
    *,
    queries: Queries,
    catalog: SagaCatalog,
    metrics: ObserverMetrics,
    instance: Instance,
    max_page_size: int,
    access: AccessPolicy,
    audit: AuditLog,
    replayer: Replayer | None = None,
    maps: SagaMaps | None = None,
    clock: Callable[[], int] = _clock,
) -> FastAPI:
    """The observer's FastAPI application, guarded by ``access``.

    ``replayer`` enables ``POST /api/dead-letters/.../replay`` (operators only);
    ``maps`` enables the saga map and failure patterns; ``clock`` says what time it is
    (microseconds since the epoch) for "waiting for more than" and deadlines.
    """
    app = FastAPI(
        title="choreokit saga observer",
        version="1",
        summary="Flows rebuilt from a choreography's events, judged against saga specs.",
        openapi_url="/api/openapi.json",
        docs_url=None,  # served below from local files: no CDN, no inline script
        redoc_url=None,
    )
    problems.install(app)
    install_access(app, access)

    def page(limit: int) -> int:
        if limit > max_page_size:
            raise HTTPException(
                422, f"limit: at most {max_page_size} items per page; page with 'offset'"
            )
        return limit

    _flow_routes(app, queries, page, clock)
    if maps is not None:
        _map_routes(app, maps, catalog, clock)
    dead_letter_routes(app, queries, replayer, audit)
    _record_routes(app, queries, catalog, page)
    _instance_routes(app, queries, metrics, instance)
    _audit_routes(app, audit, page)
    _ui_routes(app)
    return app


def _audit_routes(app: FastAPI, audit: AuditLog, page: Callable[[int], int]) -> None:
    operator = require(Role.OPERATOR)

    @app.get(
        "/api/audit",
        tags=["access"],
        responses=_INVALID | _UNAUTHORIZED,
        dependencies=[Depends(operator)],
    )
    async def audit_entries(limit: Limit = 50, offset: Offset = 0) -> AuditPage:
        """Write actions taken through the observer, newest first (operators only)."""
        total, entries = await audit.entries(limit=page(limit), offset=offset)
        return AuditPage(
            total=total,
            items=[
                AuditView(
                    id=e.id,
                    at=datetime.fromtimestamp(e.at_us / 1e6, UTC),
                    actor=e.actor,
                    role=e.role,
                    action=e.action,
                    target=e.target,
                    reason=e.reason,
                    detail=e.detail,
                    result=e.result,
                )
                for e in entries
            ],
        )


def _map_routes(
    app: FastAPI, maps: SagaMaps, catalog: SagaCatalog, clock: Callable[[], int]
) -> None:
    def spec_of(name: str) -> Any:
        spec = catalog.get(name[:64])
        if spec is None:
            known = ", ".join(s.name for s in catalog) or "none"
            raise HTTPException(404, f"no saga named {name!r}; the sagas are: {known}")
        return spec

    @app.get("/api/sagas/{name}/map", tags=["sagas"], responses=_NOT_FOUND | _INVALID | _BAD)
    async def saga_map(name: str, since: Since = None, until: Until = None) -> SagaMapView:
        """The saga drawn as a graph with live figures for its flows started in the window.

        For each step: flows that passed it, flows waiting there now (running,
        stalled, past the step's deadline); for each transition: the flows that
        took it and the time between the two steps (p50/p95). Each figure links
        to its flows in ``/api/flows``.
        """
        spec = spec_of(name)
        since_us, until_us = _window(since, until)
        return await maps.saga_map(spec, since_us=since_us, until_us=until_us, now_us=clock())

    @app.get(
        "/api/sagas/{name}/failure-patterns",
        tags=["sagas"],
        responses=_NOT_FOUND | _INVALID | _BAD,
    )
    async def failure_patterns(
        name: str,
        status: Annotated[
            list[Status] | None,
            Query(
                description="Statuses to group (repeatable; stalled, failed, "
                "failed-uncompensated and compensated by default)."
            ),
        ] = None,
        since: Since = None,
        until: Until = None,
        limit: Annotated[int, Query(ge=1, le=200, description="Patterns to list.")] = 50,
    ) -> FailurePatternsView:
        """Stalled and failed flows grouped by last step and error fingerprint, largest first."""
        spec = spec_of(name)
        chosen = tuple(dict.fromkeys(status or FAILURE_STATUSES))
        if Status.COMPLETED in chosen or Status.RUNNING in chosen:
            raise HTTPException(
                422,
                "status: failure patterns group stalled and failed flows, not "
                "completed or running ones",
            )
        since_us, until_us = _window(since, until)
        return await maps.failure_patterns(
            spec, statuses=chosen, since_us=since_us, until_us=until_us, limit=limit
        )


def _waited(value: str | None) -> timedelta | None:
    if value is None:
        return None
    found = parse_duration(value)
    if not isinstance(found, timedelta):
        raise HTTPException(422, "waited_more_than: a duration such as 30s, 5m, 1h or 250ms")
    if found > MAX_WAIT:
        raise HTTPException(422, f"waited_more_than: at most {MAX_WAIT.days} days")
    return found


def _flow_routes(
    app: FastAPI, queries: Queries, page: Callable[[int], int], clock: Callable[[], int]
) -> None:
    @app.get("/api/flows", tags=["flows"], responses=_INVALID | _BAD)
    async def list_flows(
        *,
        status: Annotated[
            list[Status] | None, Query(description="Any of these statuses (repeatable).")
        ] = None,
        saga: Annotated[str | None, Query(max_length=64, description="Saga type.")] = None,
        event_type: Annotated[
            str | None, Query(max_length=256, description="Flows with an event of this type.")
        ] = None,
        service: Annotated[
            str | None, Query(max_length=_ID, description="Flows with an event from this service.")
        ] = None,
        since: Since = None,
        until: Until = None,
        correlation_id: Annotated[
            str | None, Query(max_length=_ID, description="Exactly this flow.")
        ] = None,
        q: Annotated[
            str | None,
            Query(
                min_length=1,
                max_length=_ID,
                description="A correlation id prefix, or the id of one of the flow's events.",
            ),
        ] = None,
        connected: Annotated[
            bool | None,
            Query(description="Whether the causation graph is one tree rooted at the start."),
        ] = None,
        dead_letters: Annotated[
            bool | None, Query(description="Whether the flow has dead letters.")
        ] = None,
        cause_type: Annotated[
            str | None,
            Query(
                max_length=256,
                description="With event_type: an event of that type caused by one of this type "
                "(a transition of the saga map).",
            ),
        ] = None,
        waiting_at: Annotated[
            str | None,
            Query(
                max_length=256,
                description="Flows waiting at this step now: an event of this type happened and "
                "none of the next steps the spec expects after it.",
            ),
        ] = None,
        waited_more_than: Annotated[
            str | None,
            Query(
                pattern=_DURATION_TEXT,
                description="Flows waiting (at waiting_at, else at any step) for longer than "
                "this: 30s, 5m, 1h, 250ms.",
            ),
        ] = None,
        dead_letter_error: Annotated[
            str | None,
            Query(max_length=256, description="Flows with an open dead letter of this error type."),
        ] = None,
        dead_letter_type: Annotated[
            str | None,
            Query(
                max_length=256,
                description="Flows with an open dead letter of an event of this type.",
            ),
        ] = None,
        dead_letter_fingerprint: Annotated[
            str | None,
            Query(
                max_length=32, description="Flows with an open dead letter of this failure group."
            ),
        ] = None,
        sort: Sort = Sort.NEWEST,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> FlowPage:
        """List and search flows, newest first by default."""
        since_us, until_us = _window(since, until)
        if cause_type is not None and event_type is None:
            raise HTTPException(400, "cause_type needs event_type: the type it caused")
        waited = _waited(waited_more_than)
        where = FlowFilter(
            statuses=tuple(status or ()),
            saga=saga,
            event_type=event_type,
            service=service,
            since_us=since_us,
            until_us=until_us,
            correlation_id=correlation_id,
            search=q,
            connected=connected,
            dead_letters=dead_letters,
            cause_type=cause_type,
            waiting_at=waiting_at,
            waiting_since_us=(
                clock() - int(waited.total_seconds() * 1_000_000) if waited is not None else None
            ),
            dead_letter_error=dead_letter_error,
            dead_letter_type=dead_letter_type,
            dead_letter_fingerprint=dead_letter_fingerprint,
        )
        items, total = await queries.flows(where, limit=page(limit), offset=offset, sort=sort)
        return FlowPage(items=items, total=total, limit=limit, offset=offset)

    @app.get("/api/flows/{correlation_id:path}", tags=["flows"], responses=_NOT_FOUND)
    async def get_flow(correlation_id: str) -> FlowDetail:
        """One flow: its events, causation edges, per-service timings, traces and judgement."""
        found = await queries.flow(correlation_id[:_ID])
        if found is None:
            raise HTTPException(404, f"no flow with correlation id {correlation_id!r}")
        return found

    @app.get("/api/events/{event_id:path}", tags=["flows"], responses=_NOT_FOUND)
    async def get_event(event_id: str) -> EventDetail:
        """One event with its payload."""
        found = await queries.event(event_id[:_ID])
        if found is None:
            raise HTTPException(404, f"no event with id {event_id!r}")
        return found

    @app.get("/api/counts", tags=["flows"], responses=_INVALID | _BAD)
    async def counts(
        saga: Annotated[str | None, Query(max_length=64)] = None,
        since: Since = None,
        until: Until = None,
    ) -> Counts:
        """How many flows are in each status (every status listed, zero included)."""
        since_us, until_us = _window(since, until)
        return await queries.counts(saga=saga, since_us=since_us, until_us=until_us)

    @app.get("/api/topology", tags=["topology"], responses=_INVALID | _BAD)
    async def topology(since: Since = None, until: Until = None) -> TopologyView:
        """Which service publishes which type, which services react to it, counts and latencies.

        A service *reacts* to type X when it published an event whose cause is
        an X; the latency is the time from the cause to the reaction.
        """
        since_us, until_us = _window(since, until)
        return await queries.topology(since_us=since_us, until_us=until_us)

    @app.get("/api/facets", tags=["flows"])
    async def facets() -> Facets:
        """The values the flow filters take."""
        return await queries.facets()


def _record_routes(
    app: FastAPI, queries: Queries, catalog: SagaCatalog, page: Callable[[int], int]
) -> None:
    @app.get("/api/sagas", tags=["sagas"])
    async def sagas() -> list[SagaView]:
        """The saga specs this observer judges by."""
        return [saga_view(spec) for spec in catalog]

    @app.get("/api/dead-letters", tags=["records"], responses=_INVALID)
    async def dead_letters(
        *,
        attached: Annotated[
            bool | None, Query(description="With a flow (true) or without one (false).")
        ] = None,
        status: Annotated[
            str | None,
            Query(
                pattern="^(dead|replayed|resolved|failed|purged)$",
                description="dead, replayed, resolved, failed or purged.",
            ),
        ] = None,
        fingerprint: Annotated[
            str | None, Query(max_length=32, description="A failure group.")
        ] = None,
        group: Annotated[
            str | None, Query(max_length=256, description="The consumer group that failed.")
        ] = None,
        flow: Annotated[str | None, Query(max_length=_ID, description="The flow id.")] = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> DeadLetterPage:
        """Records consumers gave up on (read from ``*.dlq`` topics), with their status."""
        items, total = await queries.dead_letters(
            limit=page(limit),
            offset=offset,
            attached=attached,
            status=status,
            fingerprint=fingerprint,
            group=group,
            correlation_id=flow,
        )
        return DeadLetterPage(items=items, total=total, limit=limit, offset=offset)

    @app.get("/api/rejects", tags=["records"], responses=_INVALID)
    async def rejects(limit: Limit = 50, offset: Offset = 0) -> RejectPage:
        """Records that are not events at all (counted, kept, never silently dropped)."""
        items, total = await queries.rejects(limit=page(limit), offset=offset)
        return RejectPage(items=items, total=total, limit=limit, offset=offset)


def _instance_routes(
    app: FastAPI, queries: Queries, metrics: ObserverMetrics, instance: Instance
) -> None:
    @app.get("/api/stats", tags=["instance"])
    async def stats() -> Stats:
        """What the database holds, the stored offsets, and this instance's consumer."""
        totals = await queries.totals()
        return Stats(
            **totals,
            group=instance.group,
            positions=await queries.positions(),
            instance=InstanceView(
                client_id=instance.client_id, assigned=instance.assignment(), lag=instance.lag()
            ),
        )

    @app.get("/healthz", tags=["instance"], responses={503: {"model": Health}})
    async def healthz() -> JSONResponse:
        """200 when the database answers and the consumer runs; 503 otherwise."""
        try:
            await asyncio.wait_for(queries.ping(), timeout=5)
            database = "ok"
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            database = f"unavailable: {type(exc).__name__}"
        consumer = instance.consumer_state()
        healthy = database == "ok" and consumer == "running"
        # Shaped as the Health view the OpenAPI document names.
        return health_response(healthy, database=database, consumer=consumer)

    @app.get("/metrics", tags=["instance"], response_class=Response)
    async def prometheus() -> Response:
        """Prometheus metrics (text format)."""
        try:
            found = await queries.counts()
        except (SQLAlchemyError, OSError):
            found = None
        if found is not None:
            for name, count in found.by_status.items():
                metrics.flows.labels(name).set(count)
        return metrics_response(metrics.registry)


def _ui_routes(app: FastAPI) -> None:
    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(UI_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/ui", StaticFiles(directory=UI_DIR), name="ui")

    @app.get("/api/docs", include_in_schema=False)
    async def docs() -> FileResponse:
        return FileResponse(UI_DIR / "docs.html", headers={"Cache-Control": "no-cache"})

    swagger = _swagger_assets()
    if swagger is not None:
        app.mount("/api/docs/assets", StaticFiles(directory=swagger), name="swagger")


def _swagger_assets() -> Path | None:
    """Swagger UI's files, from the ``swagger-ui-bundle`` package (served locally, no CDN)."""
    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:  # the docs page then says how to get them
        return None
    return Path(str(swagger_ui_path))


def _window(since: datetime | None, until: datetime | None) -> tuple[int | None, int | None]:
    since_us = micros(_aware(since)) if since else None
    until_us = micros(_aware(until)) if until else None
    if since_us is not None and until_us is not None and until_us <= since_us:
        raise HTTPException(400, "'until' must be later than 'since'")
    return since_us, until_us


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
