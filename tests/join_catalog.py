"""A join over three input types on three topics, for the join tests (in memory and in a process).

``join.a``, ``join.b`` and ``join.c`` each carry an ``order_id``; the join
``ready`` waits for one of each per order and publishes ``join.done`` (naming the
inputs' types it saw), or, with a deadline, ``join.timed_out`` for the ones that
came.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from choreokit.events import Event, HandlerContext, KafkaSettings, Registry, Service
from choreokit.events.sql import Join, Joined


@dataclass(frozen=True)
class JoinCatalog:
    registry: Registry
    # Any: the classes are declared per test (their fields are not known to the type checker).
    inputs: tuple[Any, ...]
    done: Any
    timed_out: Any
    topics: tuple[str, ...]
    out_topic: str


def join_catalog(prefix: str) -> JoinCatalog:
    reg = Registry()

    class A(Event, type="join.a", version=1, topic=f"{prefix}.a", registry=reg):
        order_id: str

    class B(Event, type="join.b", version=1, topic=f"{prefix}.b", registry=reg):
        order_id: str

    class C(Event, type="join.c", version=1, topic=f"{prefix}.c", registry=reg):
        order_id: str

    class Done(Event, type="join.done", version=1, topic=f"{prefix}.out", registry=reg):
        order_id: str
        inputs: tuple[str, ...]

    class TimedOut(Event, type="join.timed_out", version=1, topic=f"{prefix}.out", registry=reg):
        order_id: str
        arrived: tuple[str, ...]

    return JoinCatalog(
        reg,
        (A, B, C),
        Done,
        TimedOut,
        (f"{prefix}.a", f"{prefix}.b", f"{prefix}.c"),
        f"{prefix}.out",
    )


def join_service(
    cat: JoinCatalog,
    engine: AsyncEngine,
    *,
    settings: KafkaSettings | None = None,
    deadline: timedelta | None = None,
    name: str = "joiner",
    on_input: Callable[[Any, HandlerContext], Awaitable[None]] | None = None,
) -> tuple[Service, Join]:
    """The service and its join, keyed by ``order_id``."""
    service = Service(
        name, registry=cat.registry, settings=settings, publishes=[cat.done, cat.timed_out]
    )

    async def done(joined: Joined) -> Any:
        return cat.done(order_id=joined.key, inputs=tuple(joined.events))

    def timed_out(joined: Joined) -> Any:
        return cat.timed_out(order_id=joined.key, arrived=tuple(joined.events))

    join = Join(
        service,
        "ready",
        inputs=cat.inputs,
        key="order_id",
        engine=engine,
        output=done,
        deadline=deadline,
        on_timeout=timed_out if deadline is not None else None,
        check_interval=timedelta(milliseconds=100),
        on_input=on_input,
    )
    return service, join
