"""Runs a three-step orchestration in its own process, for crash-and-resume tests.

Each step records a side effect in a ledger keyed by the step's idempotency
key (a repeated key is a no-op, as a real idempotent API would answer) and
counts every call. With ``--die-after-effect STEP`` the process kills itself
with SIGKILL right after that step's side effect, before the orchestration
can record the step as done: the worst moment for a crash.

Run: python -m tests.integration.orchestration_worker --db URL --run-id ID [--die-after-effect STEP]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
from datetime import timedelta

from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select, update
from sqlalchemy.exc import IntegrityError

from choreokit.events import RetryPolicy
from choreokit.events.orchestration import Orchestration, Step, StepContext
from choreokit.services.runtime.database import create_engine

ledger_metadata = MetaData()
ledger = Table(
    "ledger",
    ledger_metadata,
    Column("key", String(255), primary_key=True),
    Column("step", String(64), nullable=False),
    Column("calls", Integer, nullable=False),
)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--die-after-effect", default=None)
    args = parser.parse_args()
    engine = create_engine(args.db)
    async with engine.begin() as conn:
        await conn.run_sync(ledger_metadata.create_all)

    def effect(name: str) -> Step:
        async def act(ctx: StepContext) -> dict[str, str]:
            async with engine.begin() as conn:
                try:
                    await conn.execute(
                        insert(ledger).values(key=ctx.idempotency_key, step=name, calls=1)
                    )
                except IntegrityError:
                    await conn.rollback()
                    async with engine.begin() as again:
                        await again.execute(
                            update(ledger)
                            .where(ledger.c.key == ctx.idempotency_key)
                            .values(calls=ledger.c.calls + 1)
                        )
            if args.die_after_effect == name:
                os.kill(os.getpid(), signal.SIGKILL)
            async with engine.connect() as conn:
                key = (
                    await conn.execute(
                        select(ledger.c.key).where(ledger.c.key == ctx.idempotency_key)
                    )
                ).scalar_one()
            return {"receipt": key}

        return Step(name, act, timeout=timedelta(seconds=5), retry=RetryPolicy(max_attempts=1))

    orchestration = Orchestration(
        "resume-test", [effect("quote"), effect("label"), effect("pickup")], engine=engine
    )
    await orchestration.create_tables()
    outcome = await orchestration.run(args.run_id, {"order": "o-1"})
    print(json.dumps({"status": outcome.status.value, "results": dict(outcome.results)}))
    await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
