"""The join of tests/join_catalog.py as a real service process, for crash tests.

Prints one JSON object per line on stdout: ``{"started": pid}`` once its
consumer runs, ``{"handling": ce_id}`` as each input delivery starts (the test
SIGKILLs it then, wherever the handling is). SIGTERM stops it cleanly.

Run: python -m tests.integration.join_worker --bootstrap H:P --prefix P --db URL [--deadline-ms N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from datetime import timedelta
from typing import Any

from choreokit.events import HandlerContext, KafkaSettings
from choreokit.services.runtime.database import create_engine
from tests.join_catalog import join_catalog, join_service


def emit(obj: object) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--deadline-ms", type=int, default=None)
    args = parser.parse_args()
    cat = join_catalog(args.prefix)
    engine = create_engine(args.db)

    async def handling(_event: Any, ctx: HandlerContext) -> None:
        emit({"handling": ctx.envelope.id})

    deadline = timedelta(milliseconds=args.deadline_ms) if args.deadline_ms else None
    service, join = join_service(
        cat,
        engine,
        settings=KafkaSettings(bootstrap=args.bootstrap),
        deadline=deadline,
        on_input=handling,
    )
    await join.create_tables()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with service:
        emit({"started": os.getpid()})
        await join.run(stop)  # returns at once without a deadline
        await stop.wait()
    await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
