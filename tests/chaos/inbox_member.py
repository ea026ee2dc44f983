"""A service with an inbox in its own OS process, for the fault suite to kill and restart.

It handles ``item.added`` (the catalog of ``--prefix``): in the inbox's database
transaction it writes one row to ``chaos_effects`` and publishes one
``item.seen`` (whose id derives from its cause). A redelivered event changes
nothing twice: the inbox sends the recorded ``item.seen`` again instead.

Prints one JSON object per line on stdout: ``{"started": pid}`` once its consumer
runs, ``{"assigned": [partitions]}`` after each rebalance and ``{"handled": ce_id}``
when a delivery (first or repeated) is done. SIGTERM stops it cleanly (it
commits and leaves the group); SIGKILL is a crash.

Run: python -m tests.chaos.inbox_member --bootstrap H:P --prefix P --group G --db URL
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import signal
import sys
from collections.abc import Awaitable, Callable

from sqlalchemy import Column, Integer, MetaData, String, Table, insert
from sqlalchemy.ext.asyncio import AsyncEngine

from choreokit.events import Delivery, HandlerContext, KafkaSettings, Middleware, Service
from choreokit.events.sql import Inbox, create_tables, transaction
from choreokit.services.runtime.database import create_engine
from tests.support import catalog

business = MetaData()
effects = Table(
    "chaos_effects",
    business,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("flow", String(64), nullable=False),
    Column("n", Integer, nullable=False),
)
"""One row per handling that took effect: more rows than events would be a duplicated effect."""


def emit(obj: object) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


class _Assignments(logging.Handler):
    _pattern = re.compile(r"partitions assigned: (.*)")

    def emit(self, record: logging.LogRecord) -> None:
        match = self._pattern.match(record.getMessage())
        if match:
            found = re.findall(r"\[(\d+)\]", match.group(1))
            emit({"assigned": sorted(int(p) for p in found)})


class Handled(Middleware):
    """Says which ``ce_id`` was delivered, once the delivery (handling and sends) is done."""

    async def on_delivery(
        self, delivery: Delivery, call_next: Callable[[Delivery], Awaitable[None]]
    ) -> None:
        await call_next(delivery)
        emit({"handled": delivery.envelope.id})


async def prepare(url: str) -> AsyncEngine:
    """The member's database with the inbox's tables and ``chaos_effects``."""
    engine = create_engine(url)
    await create_tables(engine)
    async with engine.begin() as conn:
        await conn.run_sync(business.create_all)
    return engine


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--replication", type=int, default=1)
    args = parser.parse_args()
    logging.getLogger("choreokit.service").setLevel(logging.INFO)
    logging.getLogger("choreokit.service").addHandler(_Assignments())

    cat = catalog(args.prefix)
    settings = KafkaSettings(
        bootstrap=args.bootstrap,
        topic_partitions=args.partitions,
        topic_replication=args.replication,
    )
    engine = await prepare(args.db)
    service = Service(args.group, registry=cat.registry, settings=settings, publishes=[cat.out])
    service.use(Handled(), Inbox(engine, consumer=args.group, registry=cat.registry))

    @service.handler(cat.v2)
    async def on_item(event: object, ctx: HandlerContext) -> None:
        n = event.n  # type: ignore[attr-defined]
        await transaction().execute(insert(effects).values(flow=ctx.correlation_id, n=n))
        await ctx.publish(cat.out(n=n))

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with service:
        emit({"started": os.getpid()})
        await stop.wait()
    await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
