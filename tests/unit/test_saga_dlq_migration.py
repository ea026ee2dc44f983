"""An observer database from before dead-letter operations is upgraded in place."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import inspect, text

from choreokit.services.saga_observer.schema import LATEST
from choreokit.services.saga_observer.store import Store, open_engines
from tests.unit.test_saga_store import CATALOG

OLD_DEAD_LETTERS = """
CREATE TABLE obs_dead_letters (
    key VARCHAR(1100) PRIMARY KEY, correlation_id VARCHAR(1024), event_id VARCHAR(1024),
    event_type VARCHAR(256), error_type VARCHAR(256) NOT NULL, error_message TEXT NOT NULL,
    group_id VARCHAR(256), attempts INTEGER, failed_us BIGINT NOT NULL,
    original_topic VARCHAR(249), original_partition INTEGER, original_offset BIGINT,
    topic VARCHAR(249) NOT NULL, kafka_partition INTEGER NOT NULL,
    kafka_offset BIGINT NOT NULL, copies INTEGER NOT NULL
)
"""


async def test_a_version_2_database_gains_fingerprints_and_statuses(tmp_path: Path) -> None:
    writer, reader = open_engines(f"sqlite:///{tmp_path / 'old.sqlite3'}")
    try:
        async with writer.begin() as conn:
            await conn.execute(
                text("CREATE TABLE obs_schema (id INTEGER PRIMARY KEY, version INTEGER NOT NULL)")
            )
            await conn.execute(text("INSERT INTO obs_schema VALUES (1, 2)"))
            await conn.execute(text(OLD_DEAD_LETTERS))
            await conn.execute(
                text(
                    "INSERT INTO obs_dead_letters VALUES ('k', 'f', 'e', 't', 'KeyError', 'm', "
                    "'g', 1, 0, 'orders', 0, 3, 'orders.dlq', 0, 7, 1)"
                )
            )
        assert await Store(writer, CATALOG, group="observer").migrate() == (2, LATEST)
        async with writer.connect() as conn:
            columns = await conn.run_sync(
                lambda sync: {c["name"] for c in inspect(sync).get_columns("obs_dead_letters")}
            )
            tables = await conn.run_sync(lambda sync: set(inspect(sync).get_table_names()))
            kept = (await conn.execute(text("SELECT key FROM obs_dead_letters"))).scalar_one()
        assert {"fingerprint", "error_frame"} <= columns
        assert "obs_dlq_status" in tables
        assert kept == "k"
    finally:
        await writer.dispose()
        await reader.dispose()
