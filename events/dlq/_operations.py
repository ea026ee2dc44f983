"""Reading, replaying and purging dead letters on a Kafka cluster, every action audited."""

from __future__ import annotations

import asyncio
import getpass
import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from choreokit.events._codec import encode_payload, header_value
from choreokit.events._dead_letter import (
    AUDIT_TOPIC,
    H_REPLAY_GROUP,
    H_REPLAY_ID,
    H_REPLAY_OF,
    REPLAY_PREFIX,
    is_dead_letter_topic,
)
from choreokit.events._envelope import H_CONTENT_TYPE, H_DATAVERSION
from choreokit.events._errors import ChoreoError, ConfigurationError
from choreokit.events._kafka import (
    broker_unavailable,
    client_options,
    ensure_topics,
    reader_options,
    start_producer,
)
from choreokit.events._registry import Registry
from choreokit.events._settings import KafkaSettings
from choreokit.events.dlq._audit import PURGE, REPLAY, apply_audit, audit_entry, parse_entry
from choreokit.events.dlq._letters import DeadLetter, DeadLetterFilter, Status, parse

OPERATOR_ENV = "CHOREO_OPERATOR"
MAX_READ = 200_000
"""Most dead letters one read holds in memory."""


class DeadLetterNotFoundError(ChoreoError):
    """No dead letter has the id given."""


class ReplayRefusedError(ConfigurationError):
    """A replay was asked that would do harm (already resolved, payload invalid, ...)."""


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """What became of one replay request.

    Attributes:
        dead_letter: The dead letter's id.
        replay_id: The replay's id (its audit entry and outcome carry it).
        topic: Where it was sent.
        group: The one consumer group that handles it (``None``: every group).
        result: ``sent``, ``error``, then ``handled`` or ``failed`` when waited for.
        error: Why it was not sent, or why the group failed on it again.
    """

    dead_letter: str
    replay_id: str
    topic: str
    group: str | None
    result: str
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Return the result as JSON-ready values."""
        return {
            "dead_letter": self.dead_letter,
            "replay_id": self.replay_id,
            "topic": self.topic,
            "group": self.group,
            "result": self.result,
            "error": self.error,
        }


def default_operator() -> str:
    """Who acts: ``$CHOREO_OPERATOR``, else the login name."""
    name = os.environ.get(OPERATOR_ENV, "").strip()
    if name:
        return name[:256]
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


class DeadLetterStore:
    """The dead-letter topics of a cluster, and the audit topic, as one place to act on.

    Example::

        async with DeadLetterStore(KafkaSettings()) as store:
            letters = await store.read(DeadLetterFilter(group="payments"))
            results = await store.replay(letters, operator="alice")

    Every replay and purge is written to :data:`AUDIT_TOPIC`
    (``choreo.dlq.audit``), keyed by dead letter, with who did it and when; the
    consumer group that handles (or fails on) a replay writes the outcome there
    too. Kafka cannot delete one record, so a purge is an audit entry that
    :meth:`read` honours.

    Args:
        settings: How to reach Kafka.
        operator: Who acts (default: :func:`default_operator`).
    """

    def __init__(self, settings: KafkaSettings, *, operator: str | None = None) -> None:
        self._settings = settings
        self._operator = operator or default_operator()
        self._producer: AIOKafkaProducer | None = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Flush and disconnect."""
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    # -- reading --------------------------------------------------------------------------

    async def read(self, where: DeadLetterFilter | None = None) -> list[DeadLetter]:
        """Return the dead letters matching ``where``, oldest first, with their status.

        Raises:
            BrokerUnavailableError: Kafka cannot be reached.
        """
        where = where or DeadLetterFilter()
        letters = await self._read_all(where.topic)
        return [letter for letter in letters.values() if where.matches(letter)]

    async def get(self, dead_letter_id: str) -> DeadLetter:
        """Return one dead letter by id (``<dlq topic>/<partition>/<offset>``).

        Raises:
            DeadLetterNotFoundError: No dead letter has that id.
        """
        topic = dead_letter_id.rsplit("/", 2)[0]
        letters = await self._read_all(topic)
        letter = letters.get(dead_letter_id)
        if letter is None:
            raise DeadLetterNotFoundError(
                f"no dead letter {dead_letter_id!r}; 'choreo dlq list' shows the ids"
            )
        return letter

    async def _read_all(self, topic: str | None) -> dict[str, DeadLetter]:
        consumer = AIOKafkaConsumer(
            **client_options(self._settings),
            group_id=None,
            enable_auto_commit=False,
            fetch_max_wait_ms=50,
            **reader_options(self._settings),
        )
        try:
            await consumer.start()
        except KafkaError as exc:
            await consumer.stop()
            raise broker_unavailable(self._settings, exc, "reading dead letters") from exc
        try:
            names = await consumer.topics()
            wanted = [
                t
                for t in sorted(names)
                if is_dead_letter_topic(t) and (topic is None or t in (topic, topic + ".dlq"))
            ]
            if AUDIT_TOPIC in names:
                wanted.append(AUDIT_TOPIC)
            records = await _read_to_end(consumer, wanted)
        except KafkaError as exc:
            raise broker_unavailable(self._settings, exc, "reading dead letters") from exc
        finally:
            await consumer.stop()
        letters: dict[str, DeadLetter] = {}
        entries = []
        for record in records:
            if record.topic == AUDIT_TOPIC:
                entry = parse_entry(record.value)
                if entry is not None:
                    entries.append(entry)
            elif len(letters) < MAX_READ:
                letter = parse(record)
                letters[letter.id] = letter
        apply_audit(letters, entries)
        return letters

    # -- acting ---------------------------------------------------------------------------

    async def replay(
        self,
        letters: Sequence[DeadLetter],
        *,
        data: bytes | None = None,
        registry: Registry | None = None,
        to_topic: str | None = None,
        force: bool = False,
    ) -> list[ReplayResult]:
        """Send each dead letter back, for the one consumer group that failed on it.

        The record goes to its original topic (or ``to_topic``) with its key,
        value and headers, plus ``choreo_replay_group`` (the failed group: every
        other group's consumers skip and count it), ``choreo_replay_id`` and
        ``choreo_replay_of``. Each replay is audited.

        Args:
            letters: The dead letters.
            data: A corrected JSON payload, validated against the event's model
                in ``registry`` (one dead letter only).
            registry: Where the event's model is declared (needed with ``data``).
            to_topic: Another topic to send to.
            force: Replay letters already resolved or purged too.

        Raises:
            ReplayRefusedError: The replay would do harm or cannot be built.
        """
        if data is not None and len(letters) != 1:
            raise ReplayRefusedError(
                f"--data edits one dead letter, and {len(letters)} were selected; give one id"
            )
        planned = [(letter, self._replay_record(letter, data, registry)) for letter in letters]
        if not force:
            done = [
                letter.id for letter in letters if letter.status in (Status.RESOLVED, Status.PURGED)
            ]
            if done:
                raise ReplayRefusedError(
                    f"{len(done)} dead letter(s) already resolved or purged ({done[0]}, ...); "
                    "add --force to replay them anyway"
                )
        producer = await self._start_producer()
        results: list[ReplayResult] = []
        for letter, (value, original) in planned:
            replay_id = str(uuid.uuid4())
            topic = to_topic or letter.original_topic
            if topic is None:
                results.append(
                    ReplayResult(
                        letter.id, replay_id, "", letter.group, "error", "no original topic"
                    )
                )
                continue
            headers = [
                *original,
                (H_REPLAY_ID, replay_id.encode()),
                (H_REPLAY_OF, letter.id.encode()),
            ]
            if letter.group:
                headers.append((H_REPLAY_GROUP, letter.group.encode()))
            error: str | None = None
            try:
                await producer.send_and_wait(topic, value=value, key=letter.key, headers=headers)
            except KafkaError as exc:
                error = f"{type(exc).__name__}: {exc}"
            result = "error" if error else "sent"
            await self._audit(
                REPLAY,
                letter.id,
                replay_id=replay_id,
                topic=topic,
                group=letter.group,
                edited=data is not None,
                result=result,
                error=error,
            )
            results.append(ReplayResult(letter.id, replay_id, topic, letter.group, result, error))
        return results

    async def purge(self, letters: Sequence[DeadLetter], *, reason: str) -> int:
        """Mark ``letters`` as dealt with (an audit entry each); return how many."""
        for letter in letters:
            await self._audit(PURGE, letter.id, reason=reason[:1024])
        return len(letters)

    async def wait_outcomes(
        self, results: Sequence[ReplayResult], *, within: float
    ) -> list[ReplayResult]:
        """Wait up to ``within`` seconds for the groups to report on ``results``.

        Returns:
            The results, ``handled`` or ``failed`` where the group reported.
        """
        pending = {r.replay_id: r for r in results if r.result == "sent"}
        outcome: dict[str, ReplayResult] = {}
        deadline = time.monotonic() + within
        while pending and time.monotonic() < deadline:
            letters = await self._read_all(None)
            for r in list(pending.values()):
                letter = letters.get(r.dead_letter)
                found = next(
                    (x for x in (letter.replays if letter else []) if x.replay_id == r.replay_id),
                    None,
                )
                if found is not None and found.result in ("handled", "failed"):
                    outcome[r.replay_id] = ReplayResult(
                        r.dead_letter, r.replay_id, r.topic, r.group, found.result, found.error
                    )
                    del pending[r.replay_id]
            if pending:
                await asyncio.sleep(0.2)  # noqa: sleep-ok - polls the audit topic for outcomes
        return [outcome.get(r.replay_id, r) for r in results]

    def _replay_record(
        self, letter: DeadLetter, data: bytes | None, registry: Registry | None
    ) -> tuple[bytes | None, list[tuple[str, bytes]]]:
        headers = [(k, v) for k, v in letter.headers if not k.startswith(REPLAY_PREFIX)]
        if data is None:
            return letter.value, headers
        content_type = header_value(headers, H_CONTENT_TYPE) or "application/json"
        if not content_type.startswith("application/json"):
            raise ReplayRefusedError(
                f"--data replaces a binary-mode JSON payload; {letter.id} is {content_type}"
            )
        if letter.event_type is None or registry is None or not registry.knows(letter.event_type):
            raise ReplayRefusedError(
                f"cannot validate --data: event type {letter.event_type!r} is not declared here; "
                "set CHOREO_EVENT_MODULES to the module that declares it"
            )
        version = int(header_value(headers, H_DATAVERSION) or "1")
        model = registry.model(letter.event_type, version)
        try:
            event = model.model_validate_json(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "payload"
            raise ReplayRefusedError(
                f"--data is not a valid {letter.event_type} v{version}: {where}: {first['msg']}"
            ) from None
        return encode_payload(event), headers

    async def _start_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            await ensure_topics(self._settings, [AUDIT_TOPIC])
            self._producer = await start_producer(self._settings, client_id="choreo-dlq")
        return self._producer

    async def _audit(self, action: str, dead_letter: str, **fields: Any) -> None:
        producer = await self._start_producer()
        value = audit_entry(action, dead_letter, operator=self._operator, **fields)
        try:
            await producer.send_and_wait(AUDIT_TOPIC, value=value, key=dead_letter.encode())
        except KafkaError as exc:
            raise broker_unavailable(self._settings, exc, f"auditing a {action}") from exc


async def _read_to_end(
    consumer: AIOKafkaConsumer, topics: Sequence[str], *, within: float = 30.0
) -> list[ConsumerRecord[bytes, bytes]]:
    partitions = [
        TopicPartition(topic, p)
        for topic in topics
        for p in consumer.partitions_for_topic(topic) or ()
    ]
    if not partitions:
        return []
    consumer.assign(partitions)
    await consumer.seek_to_beginning(*partitions)
    ends = await consumer.end_offsets(partitions)
    remaining = set(partitions)
    found: list[ConsumerRecord[bytes, bytes]] = []
    deadline = time.monotonic() + within
    while remaining:
        if time.monotonic() > deadline:
            raise ChoreoError(
                f"reading dead letters took over {within:.0f}s; is the cluster overloaded?"
            )
        batch = await consumer.getmany(*remaining, timeout_ms=200)
        for records in batch.values():
            found.extend(records)
        for tp in list(remaining):
            # The end listed at the start, or the highwater a fetch reported since, if later
            # (a broker may list the end of a partition before its newest batch).
            end = max(ends[tp], consumer.highwater(tp) or 0)
            if await consumer.position(tp) >= end:
                remaining.discard(tp)
    found.sort(key=lambda r: (r.topic != AUDIT_TOPIC, r.timestamp, r.topic, r.partition, r.offset))
    return found
