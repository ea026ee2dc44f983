"""The observer's per-event Python work, in process: ``classify`` and the judge path.

Not a test and not a suite scenario: a profiling driver. It builds the ``observer``
scenario's records (five-event order flows on four topics, headers from
``encode_headers(Envelope)``, JSON payloads), reads them the way a catch-up does
(batches of one topic's records at a time, so a flow is re-judged as its events come
in), and reports the CPU time per event of

* ``classify``: every record through :func:`records.classify`;
* ``judge``: the store's pure part of re-judging the flows a batch touched (graph,
  verdict, waits, the flow row's values, the transition), with the store's cache;
* ``apply``: :meth:`Store.apply` on a fresh SQLite file (everything: SQL included).

Run ``python -m choreokit.services.bench._observer_cpu [--events N] [--profile PART]``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition

from choreokit.services.bench._observer import TOPICS, _records, _spec
from choreokit.services.saga_observer.catalog import SagaCatalog
from choreokit.services.saga_observer.events import LIFECYCLE_TYPES
from choreokit.services.saga_observer.graph import FlowGraph, Node
from choreokit.services.saga_observer.judge import judge
from choreokit.services.saga_observer.lifecycle import transition
from choreokit.services.saga_observer.records import Seen, SeenEvent, classify, micros
from choreokit.services.saga_observer.store import Advance, Store, open_engines
from choreokit.services.saga_observer.waits import waits_of

BATCH = 2_000
LIMIT = 16_384


def consumer_records(events: int) -> list[ConsumerRecord[bytes, bytes]]:
    """The scenario's records as the consumer reads them: one topic's batch after another."""
    raw, _big = _records(events)
    by_topic: dict[str, list[Any]] = defaultdict(list)
    for topic, key, value, headers in raw:
        by_topic[topic].append((key, value, headers))
    now_ms = int(time.time() * 1000)
    out: list[ConsumerRecord[bytes, bytes]] = []
    cursors = dict.fromkeys(by_topic, 0)
    while any(cursors[t] < len(by_topic[t]) for t in by_topic):
        for topic in TOPICS:
            rows = by_topic.get(topic, [])
            start = cursors.get(topic, 0)
            for offset in range(start, min(start + BATCH, len(rows))):
                key, value, headers = rows[offset]
                out.append(
                    ConsumerRecord(
                        topic,
                        0,
                        offset,
                        now_ms,
                        0,
                        key,
                        value,
                        None,
                        len(key),
                        len(value),
                        tuple(headers),
                    )
                )
            cursors[topic] = start + BATCH
    return out


def batches(seen: Sequence[Seen]) -> list[list[Seen]]:
    return [list(seen[i : i + BATCH]) for i in range(0, len(seen), BATCH)]


def run_classify(records: Sequence[ConsumerRecord[bytes, bytes]]) -> list[Seen]:
    return [classify(r, lifecycle_types=LIFECYCLE_TYPES, payload_limit=LIMIT) for r in records]


def run_judge(seen: Sequence[Seen], catalog: SagaCatalog, now_us: int) -> int:
    """What ``Store._rejudge`` does in Python for each batch's flows, with its cache, no SQL."""
    from choreokit.services.saga_observer import store as s

    judged = 0
    cache: dict[str, FlowGraph] = {}
    for batch in batches(seen):
        fresh: dict[str, list[Node]] = defaultdict(list)
        for event in batch:
            if isinstance(event, SeenEvent):
                made = s._event_row(event, deliveries=1)
                # A tuple in _EVENT_COLUMNS' order (a dict in trees before the write path's).
                row = (
                    dict(zip(s._EVENT_COLUMNS, made, strict=True))
                    if isinstance(made, tuple)
                    else made
                )
                fresh[event.envelope.correlation_id].append(
                    Node(
                        row["id"],
                        row["type"],
                        row["time_us"],
                        row["causation_id"],
                        row["service"],
                        event.envelope.joined_ids,
                    )
                )
        for cid, new in fresh.items():
            cached = cache.get(cid)
            if cached is None:
                graph = FlowGraph(cid, new)
            elif hasattr(cached, "extended"):
                graph = cached.extended(new)
            else:  # the code before FlowGraph.extended (A/B runs against an older tree)
                graph = FlowGraph(cid, [*cached, *new])
            verdict = judge(graph, catalog, now_us, ())
            spec = catalog.get(verdict.saga) if verdict.saga else None
            waits_of(graph, verdict, spec)
            s._flow_values(graph, verdict, 0, 0, now_us)
            transition(graph, verdict, now_us)
            if verdict.status.final:
                cache.pop(cid, None)
            else:
                cache[cid] = graph
            judged += 1
    return judged


async def run_apply(seen: Sequence[Seen], catalog: SagaCatalog, now_us: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        writer, reader = open_engines(f"sqlite+aiosqlite:///{Path(tmp) / 'obs.db'}")
        store = Store(writer, catalog, group="cpu")
        await store.migrate()
        expected: dict[TopicPartition, int | None] = defaultdict(lambda: None)
        for batch in batches(seen):
            advance: dict[TopicPartition, Advance] = {}
            for s in batch:
                tp = TopicPartition(s.position.topic, s.position.partition)
                before = advance[tp].expected if tp in advance else expected[tp]
                advance[tp] = Advance(before, s.position.offset + 1)
            await store.apply(batch, advance, now_us)
            for tp, step in advance.items():
                expected[tp] = step.next
        await writer.dispose()
        await reader.dispose()


def measure(name: str, events: int, work: Callable[[], object], profile: bool) -> None:
    profiler = cProfile.Profile() if profile else None
    began = time.process_time()
    if profiler is not None:
        profiler.enable()
    work()
    if profiler is not None:
        profiler.disable()
    spent = time.process_time() - began
    print(f"{name:>9}: {spent * 1e6 / events:7.1f} µs CPU per event ({events:,} events)")
    if profiler is not None:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--profile", choices=("classify", "judge", "apply"), default=None)
    parser.add_argument("--parts", default="classify,judge,apply")
    args = parser.parse_args()
    catalog = SagaCatalog([_spec()])
    records = consumer_records(args.events)
    n = len(records)
    now_us = micros_now()
    seen = run_classify(records)  # warm: the registry's and the regexes' first use
    parts = args.parts.split(",")
    if "classify" in parts:
        measure("classify", n, lambda: run_classify(records), args.profile == "classify")
    if "judge" in parts:
        measure("judge", n, lambda: run_judge(seen, catalog, now_us), args.profile == "judge")
    if "apply" in parts:
        measure(
            "apply",
            n,
            lambda: asyncio.run(run_apply(seen, catalog, now_us)),
            args.profile == "apply",
        )


def micros_now() -> int:
    from datetime import UTC, datetime

    return micros(datetime.now(UTC))


if __name__ == "__main__":
    main()
