"""A service process that commits outbox transactions and relays them, and can crash on cue.

It runs transactions ``0 .. --transactions - 1``: each inserts the row ``n`` into its
``txns`` table and stages ``txn.done(n)`` in the outbox, in one transaction; the
transactions :func:`rolled_back` names raise after staging and roll back. An
:class:`~choreokit.events.sql.OutboxRelay` sends what committed, concurrently. Started
again after a crash, it goes on after the last committed transaction and exits 0 once
every transaction is decided and the outbox holds nothing unsent.

The fault seam is this file's alone (no production code can crash by configuration):
``CHOREO_CHAOS_CRASH=WINDOW:K`` makes the process SIGKILL itself at its ``K``-th send,

* ``before-send``: the relay has read committed rows and is about to hand the ``K``-th
  to the producer (after the database commit, before the send);
* ``after-send``: the broker acknowledged the ``K``-th send and the relay has not marked
  its row sent (after the send, before the mark).

Run: python -m tests.chaos.outbox_worker --bootstrap H:P --db URL --prefix P --seed S
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

from aiokafka.structs import RecordMetadata
from sqlalchemy import Column, Integer, MetaData, Table, func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from choreokit.events import (
    Event,
    KafkaSettings,
    Middleware,
    Outbound,
    Registry,
    SendFuture,
    Service,
)
from choreokit.events.sql import Outbox, OutboxRelay, create_tables
from choreokit.services.runtime.database import create_engine

CRASH_ENV = "CHOREO_CHAOS_CRASH"
WINDOWS = ("before-send", "after-send")

business = MetaData()
txns = Table("txns", business, Column("n", Integer, primary_key=True, autoincrement=False))


def rolled_back(seed: int, transactions: int, count: int) -> frozenset[int]:
    """The transactions that roll back: ``count`` of them, chosen by ``seed``."""
    return frozenset(random.Random(seed).sample(range(transactions), count))


def declare(prefix: str) -> tuple[Registry, Any]:
    """``txn.done`` v1 on ``<prefix>.txns``."""
    registry = Registry()

    class TxnDone(Event, type="txn.done", version=1, topic=f"{prefix}.txns", registry=registry):
        n: int

    return registry, TxnDone


class CrashAt(Middleware):
    """SIGKILLs this process at its ``at``-th send, in ``window`` (see the module's doc)."""

    def __init__(self, window: str, at: int) -> None:
        if window not in WINDOWS:
            raise SystemExit(f"{CRASH_ENV}: unknown window {window!r}; one of {WINDOWS}")
        self.window, self.at, self.sends = window, at, 0

    async def on_publish(
        self, outbound: Outbound, send: Callable[[Outbound], Awaitable[SendFuture]]
    ) -> SendFuture:
        self.sends += 1
        if self.sends != self.at:
            return await send(outbound)
        if self.window == "before-send":
            die()
        acknowledged = await send(outbound)

        async def then_die() -> RecordMetadata:
            await acknowledged
            die()

        return asyncio.ensure_future(then_die())


class BusinessRuleError(Exception):
    """A planned failure of a transaction's business change: it rolls back."""


def die() -> NoReturn:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("still alive after SIGKILL")  # pragma: no cover


async def transact(conn: AsyncConnection, n: int, outbox: Outbox, outbound: Outbound) -> None:
    """Transaction ``n``'s business change and the event announcing it, in ``conn``."""
    await conn.execute(insert(txns).values(n=n))
    await outbox.stage(conn, outbound)


def fail_if_planned(n: int, undone: frozenset[int]) -> None:
    if n in undone:
        raise BusinessRuleError(f"transaction {n} fails by plan")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--transactions", type=int, default=1000)
    parser.add_argument("--rolled-back", type=int, default=100)
    args = parser.parse_args()
    undone = rolled_back(args.seed, args.transactions, args.rolled_back)

    registry, txn_done = declare(args.prefix)
    engine = create_engine(args.db)
    await create_tables(engine)
    async with engine.begin() as conn:
        await conn.run_sync(business.create_all)
    service = Service(
        f"{args.prefix}-outboxed",
        registry=registry,
        settings=KafkaSettings(bootstrap=args.bootstrap),
        publishes=[txn_done],
    )
    crash = os.environ.get(CRASH_ENV)
    if crash:
        window, _, at = crash.partition(":")
        service.use(CrashAt(window, int(at)))
    outbox = Outbox(engine, producer=service.name)
    stop = asyncio.Event()
    async with service:
        relay = OutboxRelay(outbox, service.publisher, registry=registry, batch=50)
        relaying = asyncio.create_task(relay.run(stop))
        async with engine.connect() as conn:
            last = (await conn.execute(select(func.max(txns.c.n)))).scalar_one()
        # Transactions commit one after another: the last one in the table is where to go on.
        for n in range(0 if last is None else last + 1, args.transactions):
            with contextlib.suppress(BusinessRuleError):  # rolled back: nothing to send
                async with outbox.transaction() as conn:
                    event = service.publisher.prepare(txn_done(n=n), correlation_id=f"txn-{n}")
                    await transact(conn, n, outbox, event)
                    fail_if_planned(n, undone)
        stop.set()
        outbox.notify()
        await relaying
        while await relay.drain():
            pass  # what the relay had not sent yet
    await engine.dispose()
    print("done", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
