"""One hop of the exactly-once stream, in its own process, with Kafka transactions on.

Hop 1 turns ``<prefix>.placed`` into ``<prefix>.checked``, hop 2 ``<prefix>.checked`` into
``<prefix>.done``; both keep ``n``. Prints ``{"handled": n}`` per handler call. With
``--stall N`` the handler of event ``N`` prints ``{"stuck": N}`` and never returns: the
batch's transaction stays open with the outputs of the records before it already sent, and
the test SIGKILLs the process there. The transactional id is given, the same for every
restart of a hop: each new process fences its killed predecessor and ends the transaction
it left open.

Run: python -m tests.chaos.exactly_once_hop --bootstrap H:P --prefix P --hop 1|2 --txn-id ID
[--stall N ...] [--replication 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from choreokit.events import Event, HandlerContext, KafkaSettings, Registry, Service


@dataclass(frozen=True)
class Stream:
    """The three event types of the stream, declared for one test's prefix."""

    registry: Registry
    placed: Any
    checked: Any
    done: Any
    """The classes (``Any``: declared at run time, each with an ``n: int``)."""


def declare(prefix: str) -> Stream:
    reg = Registry()

    class Placed(Event, type=f"{prefix}.placed", version=1, topic=f"{prefix}.placed", registry=reg):
        n: int

    class Checked(
        Event, type=f"{prefix}.checked", version=1, topic=f"{prefix}.checked", registry=reg
    ):
        n: int

    class Done(Event, type=f"{prefix}.done", version=1, topic=f"{prefix}.done", registry=reg):
        n: int

    return Stream(reg, Placed, Checked, Done)


def settings(bootstrap: str, **update: object) -> KafkaSettings:
    """The stream's settings: transactions on, a short transaction timeout (a bound only)."""
    return KafkaSettings(
        bootstrap=bootstrap,
        transactions=True,
        transaction_timeout=timedelta(seconds=10),
        max_batch=200,
        **update,  # type: ignore[arg-type]
    )


def emit(obj: object) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--hop", type=int, choices=(1, 2), required=True)
    parser.add_argument("--txn-id", required=True)
    parser.add_argument("--stall", type=int, action="append", default=[])
    parser.add_argument("--replication", type=int, default=1)
    args = parser.parse_args()
    stalls = set(args.stall)
    never = asyncio.Event()
    stream = declare(args.prefix)
    source, target = (
        (stream.placed, stream.checked) if args.hop == 1 else (stream.checked, stream.done)
    )
    service = Service(
        f"{args.prefix}-hop{args.hop}",
        registry=stream.registry,
        settings=settings(
            args.bootstrap, transactional_id=args.txn_id, topic_replication=args.replication
        ),
        publishes=[target],
    )

    @service.handler(source)
    async def forward(event: Event, ctx: HandlerContext) -> None:
        n = event.n  # type: ignore[attr-defined]
        emit({"handled": n})
        if n in stalls:
            emit({"stuck": n})
            await never.wait()  # until SIGKILL, inside the batch's open transaction
        await ctx.publish(target(n=n))

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await service.start()
    emit({"started": True})
    try:
        await stop.wait()
    finally:
        await service.stop()
    emit({"stopped": service.stats.transactions_committed})


if __name__ == "__main__":
    asyncio.run(main())
