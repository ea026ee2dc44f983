"""Handling ``POST /events``: authenticate, limit, read, parse, admit, forward, answer."""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pydantic_core
from starlette.requests import Request
from starlette.responses import Response

from choreokit.events import Registry
from choreokit.events.wire import JSON
from choreokit.services.gateway._admission import Admitted, RefusedError, admit
from choreokit.services.gateway._binding import Mode, RawEvent, mode_of, parse, read_body
from choreokit.services.gateway._dedup import Receipt
from choreokit.services.gateway._forwarding import Forwarder
from choreokit.services.gateway._keys import ApiKey, KeyStore
from choreokit.services.gateway._link import KafkaLink
from choreokit.services.gateway._metrics import GatewayMetrics
from choreokit.services.gateway._problems import ErrorItem, Problem, ProblemKind
from choreokit.services.gateway._ratelimit import RateLimiter, retry_after
from choreokit.services.gateway._settings import GatewaySettings
from choreokit.services.runtime.access import FailedAuthLimit

logger = logging.getLogger("choreokit.gateway")
_AUTH_CHALLENGE = 'Bearer realm="choreokit-gateway"'


@dataclass(frozen=True, slots=True)
class Gateway:
    """Everything a request needs, built once per gateway."""

    settings: GatewaySettings
    keys: KeyStore
    registry: Registry
    link: KafkaLink
    forwarder: Forwarder
    limiter: RateLimiter
    metrics: GatewayMetrics
    failed_auth: FailedAuthLimit
    flow_enders: frozenset[str] = frozenset()
    """Types that end or compensate a flow: untrusted keys publish them in their own flows only."""

    async def accept(self, request: Request) -> Response:
        """Answer one ``POST /events``: 202 with the ids, or a problem document."""
        started = time.perf_counter()
        mode = "unknown"
        try:
            key = self._authenticate(request)
            self._limit(key)
            content_mode = mode_of(request.headers.get("content-type"))
            mode = content_mode.value
            body = await read_body(request, int(self.settings.max_body))
            raws = parse(content_mode, request.headers.raw, body)
            self._check_batch(content_mode, raws)
            admitted = self._admit(raws, key)
            receipts = await self.forwarder.forward(admitted, key)
            # The same compact UTF-8 JSON as JSONResponse, written by pydantic-core (faster).
            response: Response = Response(
                pydantic_core.to_json(_accepted(admitted, receipts)),
                status_code=202,
                media_type=JSON,
            )
            counts = Counter(
                (type(event.event).event_info().type, receipt.duplicate)
                for event, receipt in zip(admitted, receipts, strict=True)
            )
            for (event_type, duplicate), count in counts.items():
                self.metrics.events.labels(
                    type=event_type, outcome="duplicate" if duplicate else "published"
                ).inc(count)
        except Problem as problem:
            response = problem.response(instance=request.url.path)
        self.metrics.requests.labels(mode=mode, status=str(response.status_code)).inc()
        self.metrics.latency.labels(mode=mode).observe(time.perf_counter() - started)
        return response

    def _authenticate(self, request: Request) -> ApiKey:
        address = request.client.host if request.client else "-"
        blocked = self.failed_auth.blocked_for(address)
        if blocked:
            raise Problem(
                ProblemKind.RATE_LIMITED,
                "too many failed authentications from this address; wait for Retry-After "
                "seconds and check the API key",
                headers={"Retry-After": retry_after(blocked)},
            )
        header = request.headers.get("authorization")
        challenge = {"WWW-Authenticate": _AUTH_CHALLENGE}
        if not header:
            raise Problem(
                ProblemKind.UNAUTHENTICATED,
                "no credentials; send 'Authorization: Bearer <API key>'",
                headers=challenge,
            )
        scheme, _, token = header.partition(" ")
        key = self.keys.authenticate(token.strip()) if scheme.lower() == "bearer" else None
        if key is None:
            self.failed_auth.failed(address)
            raise Problem(
                ProblemKind.UNAUTHENTICATED,
                "the API key is not valid; send 'Authorization: Bearer <API key>' with a "
                "current key",
                headers={"WWW-Authenticate": _AUTH_CHALLENGE + ', error="invalid_token"'},
            )
        return key

    def _check_batch(self, mode: Mode, raws: list[RawEvent]) -> None:
        if mode is Mode.BATCH and len(raws) > self.settings.max_batch:
            raise Problem(
                ProblemKind.TOO_LARGE,
                f"the batch has {len(raws)} events; at most {self.settings.max_batch} "
                "are accepted at once (CHOREO_GATEWAY_MAX_BATCH)",
            )

    def _limit(self, key: ApiKey) -> None:
        rate = key.rate or self.settings.rate
        burst = key.burst or self.settings.burst
        wait = self.limiter.take(key.id, rate=rate, burst=burst)
        if wait > 0:
            raise Problem(
                ProblemKind.RATE_LIMITED,
                f"key {key.id!r} is over its rate of {rate:g} requests/s (burst {burst}); "
                "wait for Retry-After seconds, or send events in batches",
                headers={"Retry-After": retry_after(wait)},
            )

    def _admit(self, raws: list[RawEvent], key: ApiKey) -> list[Admitted]:
        admitted: list[Admitted] = []
        errors: list[ErrorItem] = []
        seen: dict[str, int] = {}
        for index, raw in enumerate(raws):
            try:
                event = admit(raw, key, self.registry, self.flow_enders)
            except RefusedError as refused:
                errors.extend(item.at(index) for item in refused.items)
                continue
            first = seen.setdefault(event.event_id, index)
            if first != index:
                errors.append(
                    ErrorItem(
                        f"id {event.received_id!r} is also the id of event {first} of this "
                        "batch; every event needs its own id",
                        ProblemKind.MALFORMED,
                        index=index,
                        attribute="id",
                    )
                )
            admitted.append(event)
        if errors:
            raise Problem.combine(errors, total=len(raws))
        return admitted


def _accepted(admitted: list[Admitted], receipts: list[Receipt]) -> dict[str, Any]:
    return {
        "ids": [receipt.id for receipt in receipts],
        "events": [
            {
                "id": receipt.id,
                "received_id": receipt.received_id,
                "correlationid": receipt.correlation_id,
                "topic": receipt.topic,
                "partition": receipt.partition,
                "offset": receipt.offset,
                "duplicate": receipt.duplicate,
                "ignored": list(event.ignored),
            }
            for event, receipt in zip(admitted, receipts, strict=True)
        ],
    }
