"""The fault suite's one checker: read every topic end to end and say what went wrong.

A fault test runs its stream, injects its fault, lets the system settle, then asks::

    report = await check_topics(
        bootstrap, [orders_topic, effects_topic],
        expected_flows=flow_ids,            # every flow that was started
        effect_types={"item.seen"},         # one id per (flow, type), or it is a duplicate
        terminal_types={"item.seen"},       # a flow without one of these never ended
    )
    report.print("crash_mid_handler")
    report.assert_clean()

It reports, from what is on the topics (never from what the test believes it sent):

* **lost**: an expected flow (or an expected ``ce_id``, or an expected effect
  of a flow) that is not on any topic read;
* **duplicated effects**: two *distinct* ``ce_id`` for one ``(flow, effect
  type)`` pair, i.e. an effect produced twice. The same ``ce_id`` written twice
  is a redelivery (at-least-once), counted as ``copies`` and not a fault: the
  next hop's inbox drops it;
* **order violations**: on one topic partition, a flow's events out of their
  sequence: an event written before its cause (``ce_causationid``), or, when
  a ``sequence`` is given, a smaller sequence number after a larger one
  (first copies only: a redelivered copy repeats an old position by design);
* **unended flows**: a flow with no event of a ``terminal_types`` type;
* **undecodable** records (no ``ce_id``): counted, never skipped silently.

Reading ends at each partition's end offset read before the first fetch,
which is exact on Apache Kafka (with ``isolation="read_committed"`` it is the
last stable offset). The embedded broker's end offsets are not exact (the base
offset + 1 of a partition's last batch), so there read with
``until="markers"``: a marker record is written to every partition and each
partition is read up to it; markers are left out of every figure.

:func:`redeliveries` counts what a handler saw twice: ids handled more than
once are the proof that a crash really redelivered something, and are fine
as long as the report shows no duplicated effect.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

MARKER_HEADER = "choreo_checker_marker"
"""Header of the marker records ``until="markers"`` writes; the checker skips them."""

SAMPLES = 5
"""How many examples of each problem a report prints and an assertion names."""

Isolation = Literal["read_uncommitted", "read_committed"]
Until = Literal["end_offsets", "markers"]


@dataclass(frozen=True)
class Seen:
    """One record as the checker sees it: where it is and the CloudEvents attributes it carries."""

    topic: str
    partition: int
    offset: int
    id: str | None
    type: str | None
    flow: str | None
    causation: str | None = None
    data: Any = None
    """The JSON payload (binary mode) or the ``data`` member (structured mode), else None."""

    @classmethod
    def of(cls, record: Any) -> Seen:
        """From an aiokafka ``ConsumerRecord`` (binary or structured content mode)."""
        headers = {k: (v or b"").decode("utf-8", "replace") for k, v in record.headers or ()}
        try:
            body = json.loads(record.value) if record.value else None
        except (ValueError, UnicodeDecodeError):
            body = None
        if "application/cloudevents+json" in headers.get("content-type", "") and isinstance(
            body, dict
        ):
            return cls(
                record.topic,
                record.partition,
                record.offset,
                _text(body.get("id")),
                _text(body.get("type")),
                _text(body.get("correlationid")) or _text(body.get("id")),
                _text(body.get("causationid")),
                body.get("data"),
            )
        event_id = headers.get("ce_id")
        return cls(
            record.topic,
            record.partition,
            record.offset,
            event_id,
            headers.get("ce_type"),
            headers.get("ce_correlationid") or event_id,
            headers.get("ce_causationid"),
            body,
        )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def payload_field(name: str) -> Callable[[Seen], int | None]:
    """A ``sequence`` for :func:`check`: the integer field ``name`` of the payload, if any."""

    def sequence(seen: Seen) -> int | None:
        value = seen.data.get(name) if isinstance(seen.data, dict) else None
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    return sequence


@dataclass(frozen=True, order=True)
class DuplicatedEffect:
    """One effect (a type, for one flow) written under more than one ``ce_id``."""

    flow: str
    type: str
    ids: tuple[str, ...]


@dataclass(frozen=True)
class OrderViolation:
    """A flow's event on ``topic[partition]`` at ``offset`` that came before what it follows."""

    flow: str
    topic: str
    partition: int
    offset: int
    why: str


@dataclass(frozen=True)
class Report:
    """What the topics hold, judged. Every tuple is sorted, so two runs compare equal."""

    topics: tuple[str, ...]
    records: int
    """Records read (markers excluded), copies included."""
    per_topic: Mapping[str, int]
    distinct_ids: int
    copies: int
    """Records whose ``ce_id`` was already read (redeliveries written again): allowed."""
    flows: int
    lost: tuple[str, ...]
    duplicated_effects: tuple[DuplicatedEffect, ...]
    order_violations: tuple[OrderViolation, ...]
    unended: tuple[str, ...]
    undecodable: int
    seconds: float = 0.0
    """How long reading took (0 for :func:`check` on records in hand)."""
    extra: Mapping[str, object] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        return not (
            self.lost
            or self.duplicated_effects
            or self.order_violations
            or self.unended
            or self.undecodable
        )

    def figures(self) -> str:
        """One line: the counts a fault test prints and docs/reliability.md quotes."""
        return (
            f"{self.records} records ({self.distinct_ids} distinct ids, {self.copies} copies) "
            f"in {self.flows} flows on {len(self.topics)} topic(s): lost {len(self.lost)}, "
            f"duplicated effects {len(self.duplicated_effects)}, order violations "
            f"{len(self.order_violations)}, unended {len(self.unended)}, undecodable "
            f"{self.undecodable}" + (f" (read in {self.seconds:.1f}s)" if self.seconds else "")
        )

    def print(self, label: str = "checker") -> None:
        print(f"\n{label}: {self.figures()}")
        for line in self.problems():
            print(f"  {line}")

    def problems(self) -> list[str]:
        """A line per kind of problem, with up to :data:`SAMPLES` examples each."""
        lines = []
        if self.lost:
            lines.append(f"lost {len(self.lost)}: {list(self.lost[:SAMPLES])}")
        if self.duplicated_effects:
            sample = [(d.flow, d.type, list(d.ids)) for d in self.duplicated_effects[:SAMPLES]]
            lines.append(f"duplicated effects {len(self.duplicated_effects)}: {sample}")
        if self.order_violations:
            sample_v = [
                f"{v.flow} {v.topic}[{v.partition}]@{v.offset}: {v.why}"
                for v in self.order_violations[:SAMPLES]
            ]
            lines.append(f"order violations {len(self.order_violations)}: {sample_v}")
        if self.unended:
            lines.append(f"unended flows {len(self.unended)}: {list(self.unended[:SAMPLES])}")
        if self.undecodable:
            lines.append(f"undecodable records {self.undecodable} (no ce_id)")
        return lines

    def assert_clean(self) -> None:
        """Fail with the figures and samples of every problem found."""
        assert self.clean, self.figures() + "\n" + "\n".join(self.problems())


def check(
    records: Iterable[Seen],
    *,
    expected_flows: Collection[str] = (),
    expected_ids: Collection[str] = (),
    expected_effects: Collection[str] = (),
    effect_types: Collection[str] | None = None,
    terminal_types: Collection[str] = (),
    sequence: Callable[[Seen], int | None] | None = None,
    topics: Sequence[str] = (),
    seconds: float = 0.0,
) -> Report:
    """Judge records already read (in partition-offset order per partition).

    Args:
        records: What the topics hold.
        expected_flows: Correlation ids that must appear; one missing is lost.
        expected_ids: ``ce_id`` values that must appear; one missing is lost.
        expected_effects: Types every expected flow must have an event of; a
            missing ``(flow, type)`` is lost as ``flow/type``.
        effect_types: The types that are effects (one id per flow each).
            Default: every type read.
        terminal_types: A flow with no event of these types never ended.
            Empty: the check is off.
        sequence: A flow's position of an event (e.g. ``payload_field("seq")``),
            which must not decrease along a partition.
        topics: The topics read, for the report.
        seconds: How long reading took, for the report.
    """
    ordered = sorted(records, key=lambda s: (s.topic, s.partition, s.offset))
    per_topic: Counter[str] = Counter()
    first: dict[str, Seen] = {}
    copies = undecodable = 0
    ids_of: dict[tuple[str, str], set[str]] = defaultdict(set)
    types_of: dict[str, set[str]] = defaultdict(set)
    for seen in ordered:
        per_topic[seen.topic] += 1
        if seen.id is None:
            undecodable += 1
            continue
        if seen.id in first:
            copies += 1
            continue
        first[seen.id] = seen
        flow = seen.flow or seen.id
        kind = seen.type or "?"
        types_of[flow].add(kind)
        if effect_types is None or kind in effect_types:
            ids_of[(flow, kind)].add(seen.id)

    lost = sorted(set(expected_flows) - types_of.keys())
    lost += sorted(set(expected_ids) - first.keys())
    lost += sorted(
        f"{flow}/{kind}"
        for flow in expected_flows
        if flow in types_of
        for kind in expected_effects
        if kind not in types_of[flow]
    )
    duplicated = sorted(
        DuplicatedEffect(flow, kind, tuple(sorted(ids)))
        for (flow, kind), ids in ids_of.items()
        if len(ids) > 1
    )
    flows = set(types_of) | set(expected_flows)
    unended = (
        sorted(flow for flow in flows if not types_of.get(flow, set()) & set(terminal_types))
        if terminal_types
        else []
    )
    return Report(
        topics=tuple(topics) or tuple(sorted(per_topic)),
        records=sum(per_topic.values()),
        per_topic=dict(per_topic),
        distinct_ids=len(first),
        copies=copies,
        flows=len(types_of),
        lost=tuple(lost),
        duplicated_effects=tuple(duplicated),
        order_violations=tuple(_order_violations(first.values(), sequence)),
        unended=tuple(unended),
        undecodable=undecodable,
        seconds=seconds,
    )


def _order_violations(
    firsts: Iterable[Seen], sequence: Callable[[Seen], int | None] | None
) -> list[OrderViolation]:
    found: list[OrderViolation] = []
    by_partition: dict[tuple[str, int], list[Seen]] = defaultdict(list)
    for seen in firsts:
        by_partition[(seen.topic, seen.partition)].append(seen)
    for (topic, partition), seens in sorted(by_partition.items()):
        seens.sort(key=lambda s: s.offset)
        written = {s.id: s.offset for s in seens}
        highest: dict[str, tuple[int, int]] = {}
        for seen in seens:
            flow = seen.flow or seen.id or "?"
            cause = seen.causation
            if cause is not None and written.get(cause, -1) > seen.offset:
                found.append(
                    OrderViolation(
                        flow, topic, partition, seen.offset, f"before its cause at {written[cause]}"
                    )
                )
            position = sequence(seen) if sequence is not None else None
            if position is None:
                continue
            before = highest.get(flow)
            if before is not None and position < before[0]:
                found.append(
                    OrderViolation(
                        flow,
                        topic,
                        partition,
                        seen.offset,
                        f"sequence {position} after {before[0]} at {before[1]}",
                    )
                )
            else:
                highest[flow] = (position, seen.offset)
    return found


def redeliveries(handled: Iterable[str]) -> dict[str, int]:
    """The ids a handler was called with more than once, and how many times each.

    Feed it every ``ce_id`` the handler side saw (across restarts). A crash
    between an effect and its offset commit shows up here; with an inbox the
    report still shows no duplicated effect.
    """
    counts = Counter(handled)
    return {event_id: n for event_id, n in sorted(counts.items()) if n > 1}


async def read_topics(
    bootstrap: str,
    topics: Sequence[str],
    *,
    isolation: Isolation = "read_uncommitted",
    until: Until = "end_offsets",
    timeout: float = 60.0,
    **client: Any,
) -> list[Seen]:
    """Every record of ``topics`` from the earliest offset to the end, in offset order.

    Args:
        isolation: ``read_committed`` leaves out aborted transactions' records.
        until: ``end_offsets`` (exact on Apache Kafka) or ``markers`` (for the
            embedded broker: writes one marker per partition and reads up to it).
        timeout: Fail if the topics are not read within this many seconds.
        client: More aiokafka client options (security settings).
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        isolation_level=isolation,
        fetch_max_wait_ms=100,
        **client,
    )
    await consumer.start()
    try:
        partitions = await _partitions(consumer, topics)
        token = uuid.uuid4().hex.encode()
        if until == "markers":
            await _write_markers(bootstrap, partitions, token, client)
            ends: dict[TopicPartition, int] | None = None
        else:
            ends = dict(await consumer.end_offsets(partitions))
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        found: list[Seen] = []
        waiting = set(partitions)
        deadline = time.monotonic() + timeout
        while waiting:
            if ends is not None:
                waiting = {tp for tp in waiting if await consumer.position(tp) < ends[tp]}
                if not waiting:
                    break
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{sorted(str(tp) for tp in waiting)} not read to the end in {timeout}s"
                )
            batches = await consumer.getmany(*waiting, timeout_ms=200)
            for tp, batch in batches.items():
                if _take(batch, found, token, None if ends is None else ends[tp]):
                    waiting.discard(tp)
        return found
    finally:
        await consumer.stop()


def _take(batch: Iterable[Any], found: list[Seen], token: bytes, end: int | None) -> bool:
    """Add a fetched batch's records to ``found``; True once the partition's end is reached."""
    for record in batch:
        if end is not None and record.offset >= end:
            return True
        marker = dict(record.headers or ()).get(MARKER_HEADER)
        if marker == token:
            return True
        if marker is None:
            found.append(Seen.of(record))
    return False


async def _partitions(consumer: AIOKafkaConsumer, topics: Sequence[str]) -> list[TopicPartition]:
    found: list[TopicPartition] = []
    for topic in topics:
        numbers = consumer.partitions_for_topic(topic)
        if not numbers:
            await consumer._client.force_metadata_update()  # no public refresh in aiokafka
            numbers = consumer.partitions_for_topic(topic)
        assert numbers, f"{topic}: no such topic (or no partitions) on the broker"
        found.extend(TopicPartition(topic, p) for p in sorted(numbers))
    return found


async def _write_markers(
    bootstrap: str, partitions: Sequence[TopicPartition], token: bytes, client: Mapping[str, Any]
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", **client)
    await producer.start()
    try:
        sends = [
            await producer.send(
                tp.topic,
                value=b"",
                partition=tp.partition,
                headers=[(MARKER_HEADER, token)],
            )
            for tp in partitions
        ]
        await asyncio.gather(*sends)
    finally:
        await producer.stop()


async def check_topics(
    bootstrap: str,
    topics: Sequence[str],
    *,
    isolation: Isolation = "read_uncommitted",
    until: Until = "end_offsets",
    timeout: float = 60.0,
    client: Mapping[str, Any] | None = None,
    **expectations: Any,
) -> Report:
    """Read ``topics`` end to end (:func:`read_topics`) and :func:`check` what is there.

    ``expectations`` are :func:`check`'s keywords (``expected_flows``,
    ``expected_ids``, ``expected_effects``, ``effect_types``,
    ``terminal_types``, ``sequence``).
    """
    started = time.monotonic()
    seen = await read_topics(
        bootstrap, topics, isolation=isolation, until=until, timeout=timeout, **(client or {})
    )
    return check(seen, topics=topics, seconds=time.monotonic() - started, **expectations)


def until_for(engine: str) -> Until:
    """How to find the end of a partition on ``engine`` (``tansu`` or ``kafka``)."""
    return "markers" if engine == "tansu" else "end_offsets"
