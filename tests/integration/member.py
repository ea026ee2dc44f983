"""One consumer-group member in its own process, for failover tests.

Prints one JSON object per line on stdout: ``{"assigned": [partitions]}`` after
each rebalance and ``{"handled": n}`` for each event it handles. With
``--hang`` it never finishes handling its first record (so it never commits);
``SIGKILL`` is the only way out, as in a crash.

Run: python -m tests.integration.member --bootstrap H:P --prefix P --group G [--hang]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
import sys

from choreokit.events import KafkaSettings, Service
from tests.support import catalog


class _Assignments(logging.Handler):
    _pattern = re.compile(r"partitions assigned: (.*)")

    def emit(self, record: logging.LogRecord) -> None:
        match = self._pattern.match(record.getMessage())
        if match:
            found = re.findall(r"\[(\d+)\]", match.group(1))
            emit({"assigned": sorted(int(p) for p in found)})


def emit(obj: object) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--hang", action="store_true")
    args = parser.parse_args()
    logging.getLogger("choreokit.service").setLevel(logging.INFO)
    logging.getLogger("choreokit.service").addHandler(_Assignments())

    cat = catalog(args.prefix)
    service = Service(
        args.group, registry=cat.registry, settings=KafkaSettings(bootstrap=args.bootstrap)
    )
    never = asyncio.Event()

    @service.handler(cat.v2)
    async def on_item(event: object) -> None:
        emit({"handled": event.n})  # type: ignore[attr-defined]
        if args.hang:
            await never.wait()

    await service.run(asyncio.Event())


if __name__ == "__main__":
    asyncio.run(main())
