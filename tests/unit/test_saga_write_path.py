"""The observer's write path in memory: how ingest spreads a batch over concurrent writers
(PostgreSQL: whole partitions per transaction, at most ``writers`` of them, the records
spread about evenly), and the SQLite connection settings it relies on."""

from __future__ import annotations

from pathlib import Path

from aiokafka import TopicPartition

from choreokit.services.runtime.database import create_engine
from choreokit.services.saga_observer.ingest import _plan, _split
from choreokit.services.saga_observer.records import Seen, SeenDeadLetter, SeenEvent
from choreokit.services.saga_observer.store import Advance


def parts(sizes: dict[str, int]) -> dict[TopicPartition, tuple[list[Seen], Advance]]:
    """Partitions of ``sizes[topic]`` events (empty stand-ins: their kind and number count)."""
    event: Seen = SeenEvent.__new__(SeenEvent)
    return {TopicPartition(topic, 0): ([event] * n, Advance(None, n)) for topic, n in sizes.items()}


def test_one_writer_or_one_partition_is_one_transaction() -> None:
    batch = parts({"a": 3, "b": 5})
    assert _split(batch, 1) == [batch]
    single = parts({"a": 7})
    assert _split(single, 4) == [single]


def test_partitions_stay_whole_in_at_most_writers_groups_of_even_size() -> None:
    batch = parts({"a": 500, "b": 480, "c": 20, "d": 10, "e": 490})
    groups = _split(batch, 3)
    assert len(groups) == 3
    assert sorted(tp for g in groups for tp in g) == sorted(batch)
    assert all(g[tp] is batch[tp] for g in groups for tp in g)
    sizes = sorted(sum(len(seen) for seen, _ in g.values()) for g in groups)
    assert sizes == [500, 500, 500]


def test_partitions_with_dead_letters_are_written_after_the_event_groups() -> None:
    """A dead letter must not be written at once with its flow's first events (each
    transaction would miss the other's uncommitted row)."""
    events = parts({"orders": 4, "payments": 3})
    letter: Seen = SeenDeadLetter.__new__(SeenDeadLetter)  # only its kind counts here
    letters: dict[TopicPartition, tuple[list[Seen], Advance]] = {
        TopicPartition("orders.dlq", 0): ([letter], Advance(None, 1))
    }
    groups, after = _plan(events | letters, 4)
    assert after == letters
    assert sorted(tp for g in groups for tp in g) == sorted(events)
    assert _plan(events | letters, 1) == ([events | letters], {})


async def test_sqlite_connections_keep_wal_and_get_the_larger_page_cache(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    try:
        async with engine.connect() as conn:
            pragmas = {
                name: (await conn.exec_driver_sql(f"PRAGMA {name}")).scalar()
                for name in ("journal_mode", "synchronous", "cache_size", "temp_store")
            }
    finally:
        await engine.dispose()
    assert pragmas == {
        "journal_mode": "wal",
        "synchronous": 1,
        "cache_size": -65536,
        "temp_store": 2,
    }
