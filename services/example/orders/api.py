"""The order intake API: place an order (v2, or the legacy v1 shape), look one up."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Sequence

from fastapi import Depends, FastAPI, HTTPException, Request, Response
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.registry import Collector
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import IntegrityError

from choreokit.events import Publisher
from choreokit.events.sql import Outbox
from choreokit.services.example.contracts.orders import (
    Address,
    OrderLine,
    OrderPlaced,
    OrderPlacedV1,
)
from choreokit.services.example.orders import store
from choreokit.services.example.orders.settings import OrdersSettings
from choreokit.services.runtime.http import (
    BodyLimit,
    add_health_and_metrics,
    install_problem_handlers,
)

ORDER_ID = r"^[A-Za-z0-9._-]{1,64}$"


class OrderRequest(BaseModel):
    """An order, as the storefront sends it (published as ``order.placed`` v2)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    order_id: str | None = Field(default=None, pattern=ORDER_ID)
    """Your id for the order; sending the same order again with it is harmless."""
    customer_id: str = Field(min_length=1, max_length=64)
    lines: tuple[OrderLine, ...] = Field(min_length=1, max_length=100)
    ship_to: Address
    currency: str = Field(default="EUR", min_length=3, max_length=3)


class LegacyOrderRequest(BaseModel):
    """A single-product order from the legacy checkout (published as ``order.placed`` v1)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    order_id: str | None = Field(default=None, pattern=ORDER_ID)
    customer_id: str = Field(min_length=1, max_length=64)
    sku: str = Field(min_length=1, max_length=64)
    quantity: int = Field(gt=0, le=1000)
    unit_price_cents: int = Field(ge=0)
    country: str = Field(default="DE", min_length=2, max_length=2)
    postal_code: str = Field(default="10115", min_length=1, max_length=16)


class Accepted(BaseModel):
    """The order is recorded; its ``order.placed`` is on its way."""

    order_id: str
    event_id: str
    correlation_id: str


class OrderView(BaseModel):
    """Where an order stands."""

    order_id: str
    status: str
    reason: str | None
    tracking_number: str | None
    correlation_id: str


def create_api(
    settings: OrdersSettings,
    *,
    outbox: Outbox,
    publisher: Callable[[], Publisher],
    ready: Callable[[], bool],
    collectors: Sequence[Collector] = (),
) -> FastAPI:
    """Build the intake API; ``publisher`` is looked up per request (the service starts first).

    ``collectors`` join ``/metrics`` (the service's consumer metrics).
    """
    app = FastAPI(
        title="choreokit orders intake",
        version="1",
        description="Places orders: each one is recorded and published as order.placed.",
    )
    install_problem_handlers(app)
    registry = CollectorRegistry()
    for collector in collectors:
        registry.register(collector)
    placed = Counter("choreo_orders_placed", "Orders accepted", ["version"], registry=registry)
    add_health_and_metrics(app, registry, ready)

    async def authorized(request: Request) -> None:
        if settings.token is None:
            return
        given = request.headers.get("authorization", "")
        expected = f"Bearer {settings.token.get_secret_value()}"
        if not secrets.compare_digest(given.encode(), expected.encode()):
            raise HTTPException(401, "a valid 'Authorization: Bearer <token>' header is required")

    async def intake(
        event: OrderPlaced | OrderPlacedV1, request_json: str, response: Response
    ) -> Accepted:
        outbound = publisher().prepare(event)
        order_id = event.order_id
        if isinstance(event, OrderPlaced):
            total = event.total_cents
        else:
            total = event.quantity * event.unit_price_cents
        try:
            async with outbox.transaction() as conn:
                await store.add(
                    conn,
                    order_id=order_id,
                    correlation_id=outbound.envelope.correlation_id,
                    event_id=outbound.envelope.id,
                    request=request_json,
                    customer_id=event.customer_id,
                    total_cents=total,
                )
                await outbox.stage(conn, outbound)
        except IntegrityError:
            async with outbox.engine.connect() as conn:
                existing = await store.get(conn, order_id)
            if existing is None or existing.request != request_json:
                raise HTTPException(
                    409, f"order_id {order_id!r} is already used by a different order"
                ) from None
            response.status_code = 200
            return Accepted(
                order_id=order_id,
                event_id=existing.event_id,
                correlation_id=existing.correlation_id,
            )
        placed.labels(str(event.event_info().version)).inc()
        return Accepted(
            order_id=order_id,
            event_id=outbound.envelope.id,
            correlation_id=outbound.envelope.correlation_id,
        )

    @app.post(
        "/orders",
        status_code=202,
        dependencies=[Depends(authorized)],
        responses={200: {"model": Accepted, "description": "The same order was sent before"}},
    )
    async def place(body: OrderRequest, response: Response) -> Accepted:
        """Place an order; it is published as ``order.placed`` v2."""
        order_id = body.order_id or f"ord-{uuid.uuid4().hex[:16]}"
        event = OrderPlaced(
            order_id=order_id,
            customer_id=body.customer_id,
            lines=body.lines,
            ship_to=body.ship_to,
            currency=body.currency,
        )
        request_json = body.model_copy(update={"order_id": order_id}).model_dump_json()
        return await intake(event, request_json, response)

    @app.post(
        "/v1/orders",
        status_code=202,
        dependencies=[Depends(authorized)],
        responses={200: {"model": Accepted, "description": "The same order was sent before"}},
    )
    async def place_legacy(body: LegacyOrderRequest, response: Response) -> Accepted:
        """Place a single-product order (legacy API); it is published as ``order.placed`` v1."""
        order_id = body.order_id or f"ord-{uuid.uuid4().hex[:16]}"
        event = OrderPlacedV1(
            order_id=order_id,
            customer_id=body.customer_id,
            sku=body.sku,
            quantity=body.quantity,
            unit_price_cents=body.unit_price_cents,
            country=body.country,
            postal_code=body.postal_code,
        )
        request_json = body.model_copy(update={"order_id": order_id}).model_dump_json()
        return await intake(event, request_json, response)

    @app.get("/orders/{order_id}", dependencies=[Depends(authorized)])
    async def lookup(order_id: str) -> OrderView:
        """Where an order stands: placed, confirmed or cancelled."""
        async with outbox.engine.connect() as conn:
            order = await store.get(conn, order_id)
        if order is None:
            raise HTTPException(404, f"no order {order_id!r}")
        return OrderView(
            order_id=order.order_id,
            status=order.status,
            reason=order.reason,
            tracking_number=order.tracking_number,
            correlation_id=order.correlation_id,
        )

    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    return app
