"""The observer's tables, and the versioned migrations that create and change them.

The schema version lives in ``obs_schema``. Migrations run at start, in one
transaction, under a lock (PostgreSQL: an advisory lock; SQLite: ``BEGIN
IMMEDIATE``), so instances starting together migrate once. A database migrated
by a newer observer is refused rather than misread.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    inspect,
    select,
    text,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from choreokit.events import ConfigurationError

ID = 1024
"""Longest id kept (the codec refuses longer CloudEvents attributes)."""

metadata = MetaData()

schema_version = Table(
    "obs_schema",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("version", Integer, nullable=False),
)

events = Table(
    "obs_events",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("correlation_id", String(ID), nullable=False),
    Column("causation_id", String(ID)),
    Column("type", String(256), nullable=False),
    Column("dataversion", Integer, nullable=False),
    Column("source", String(ID), nullable=False),
    Column("service", String(ID), nullable=False),
    Column("time_us", BigInteger, nullable=False),
    Column("traceparent", String(256)),
    Column("trace_id", String(32)),
    Column("topic", String(249), nullable=False),
    Column("kafka_partition", Integer, nullable=False),
    Column("kafka_offset", BigInteger, nullable=False),
    Column("payload", Text),
    Column("size", Integer, nullable=False),
    Column("deliveries", Integer, nullable=False),
    Column("joined", Text),
    Index("obs_events_flow", "correlation_id", "time_us"),
    Index("obs_events_type", "type", "correlation_id"),
    Index("obs_events_service", "service", "correlation_id"),
    Index("obs_events_time", "time_us"),
)

flows = Table(
    "obs_flows",
    metadata,
    Column("correlation_id", String(ID), primary_key=True),
    Column("saga", String(64)),
    Column("status", String(32), nullable=False),
    Column("root_id", String(ID)),
    Column("root_type", String(256)),
    Column("connected", Boolean, nullable=False),
    Column("started_us", BigInteger, nullable=False),
    Column("last_us", BigInteger, nullable=False),
    Column("ended_us", BigInteger),
    Column("deadline_us", BigInteger),
    Column("end_type", String(256)),
    Column("event_count", Integer, nullable=False),
    Column("duplicates", Integer, nullable=False),
    Column("dead_letters", Integer, nullable=False),
    Column("orphans", Integer, nullable=False),
    Column("expected", Text, nullable=False),
    Column("missing", Text, nullable=False),
    Column("services", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("judged_us", BigInteger, nullable=False),
    Index("obs_flows_status_deadline", "status", "deadline_us"),
    Index("obs_flows_saga_status", "saga", "status"),
    Index("obs_flows_started", "started_us"),
)

dead_letters = Table(
    "obs_dead_letters",
    metadata,
    Column("key", String(1100), primary_key=True),
    Column("correlation_id", String(ID)),
    Column("event_id", String(ID)),
    Column("event_type", String(256)),
    Column("error_type", String(256), nullable=False),
    Column("error_message", Text, nullable=False),
    Column("group_id", String(256)),
    Column("attempts", Integer),
    Column("failed_us", BigInteger, nullable=False),
    Column("original_topic", String(249)),
    Column("original_partition", Integer),
    Column("original_offset", BigInteger),
    Column("topic", String(249), nullable=False),
    Column("kafka_partition", Integer, nullable=False),
    Column("kafka_offset", BigInteger, nullable=False),
    Column("copies", Integer, nullable=False),
    Column("fingerprint", String(32)),
    Column("error_frame", String(512)),
    Index("obs_dead_letters_flow", "correlation_id"),
)

dead_letter_status = Table(
    "obs_dlq_status",
    metadata,
    Column("topic", String(249), primary_key=True),
    Column("kafka_partition", Integer, primary_key=True),
    Column("kafka_offset", BigInteger, primary_key=True),
    Column("status", String(16), nullable=False),
    Column("status_us", BigInteger, nullable=False),
)
"""Where a dead letter (by its position in its ``*.dlq`` topic) stands, from the audit topic:
replayed, resolved (the group handled the replay, final), failed or purged. A table of its
own, so that an audit entry read before its dead letter still counts."""

rejects = Table(
    "obs_rejects",
    metadata,
    Column("topic", String(249), primary_key=True),
    Column("kafka_partition", Integer, primary_key=True),
    Column("kafka_offset", BigInteger, primary_key=True),
    Column("error_type", String(256), nullable=False),
    Column("error_message", Text, nullable=False),
    Column("record_key", String(1024)),
    Column("size", Integer, nullable=False),
    Column("time_us", BigInteger, nullable=False),
)

lifecycle = Table(
    "obs_lifecycle",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("correlation_id", String(ID), nullable=False),
    Column("type", String(256), nullable=False),
    Column("status", String(32), nullable=False),
    Column("caused_by", String(ID)),
    Column("payload", Text, nullable=False),
    Column("created_us", BigInteger, nullable=False),
    Column("sent_us", BigInteger),
    Column("observed", Boolean, nullable=False),
    Column("claimed_by", String(128)),
    Column("claimed_until_us", BigInteger),
    Index("obs_lifecycle_flow", "correlation_id"),
    Index("obs_lifecycle_unsent", "sent_us"),
)

publishers = Table(
    "obs_publishers",
    metadata,
    Column("type", String(256), primary_key=True),
    Column("service", String(ID), primary_key=True),
)
"""Which service was seen publishing which type (small: the topology's nodes)."""

offsets = Table(
    "obs_offsets",
    metadata,
    Column("group_id", String(256), primary_key=True),
    Column("topic", String(249), primary_key=True),
    Column("kafka_partition", Integer, primary_key=True),
    Column("next_offset", BigInteger, nullable=False),
)


audit_log = Table(
    "obs_audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at_us", BigInteger, nullable=False),
    Column("actor", String(256), nullable=False),
    Column("role", String(32), nullable=False),
    Column("action", String(64), nullable=False),
    Column("target", String(ID), nullable=False),
    Column("reason", Text, nullable=False),
    Column("detail", Text, nullable=False),
    Column("result", String(32), nullable=False),
    Index("obs_audit_at", "at_us"),
)
"""Every write action an operator took (who, when, what, why, how it ended)."""


waits = Table(
    "obs_waits",
    metadata,
    Column("correlation_id", String(ID), primary_key=True),
    Column("step", String(256), primary_key=True),
    Column("saga", String(64), nullable=False),
    Column("after_id", String(ID), nullable=False),
    Column("since_us", BigInteger, nullable=False),
    Column("deadline_us", BigInteger),
    Column("expected", Text, nullable=False),
    Column("overdue_us", BigInteger),
    Index("obs_waits_step", "saga", "step", "since_us"),
    Index("obs_waits_due", "overdue_us", "deadline_us"),
)
"""Where running and stalled flows wait: one row per flow and step (the type of the event
the next step must follow), with the step's deadline, and when ``saga.step_overdue`` was
recorded for it. Rewritten with the flow's judgement; ended flows wait nowhere."""


approvals = Table(
    "obs_approvals",
    metadata,
    Column("correlation_id", String(ID), primary_key=True),
    Column("step", String(64), primary_key=True),
    Column("decision", String(16), nullable=False),
    Column("actor", String(256), nullable=False),
    Column("role", String(32), nullable=False),
    Column("reason", Text, nullable=False),
    Column("at_us", BigInteger, nullable=False),
    Column("event_id", String(ID), nullable=False),
    Column("request_id", String(ID), nullable=False),
    Column("by_deadline", Boolean, nullable=False),
)
"""The one decision the observer published per flow and checkpoint (an operator's, or the
deadline's fallback): who, when, what, why, and the event that carries it."""


async def _v1(conn: AsyncConnection) -> None:
    await conn.run_sync(
        lambda sync: metadata.create_all(
            sync, tables=[events, flows, dead_letters, rejects, lifecycle, publishers, offsets]
        )
    )


Migration = Callable[[AsyncConnection], Awaitable[None]]


async def _v2(conn: AsyncConnection) -> None:
    await conn.run_sync(lambda sync: metadata.create_all(sync, tables=[audit_log]))


async def _v3(conn: AsyncConnection) -> None:
    # Dead-letter operations: failure groups and statuses. A database created by this
    # version's _v1 has the columns already (create_all uses the Tables above).
    present = await conn.run_sync(
        lambda sync: {c["name"] for c in inspect(sync).get_columns("obs_dead_letters")}
    )
    for name, ddl in (("fingerprint", "VARCHAR(32)"), ("error_frame", "VARCHAR(512)")):
        if name not in present:
            await conn.execute(text(f"ALTER TABLE obs_dead_letters ADD COLUMN {name} {ddl}"))
    await conn.execute(
        text(
            "CREATE INDEX IF NOT EXISTS obs_dead_letters_fingerprint "
            "ON obs_dead_letters (fingerprint)"
        )
    )
    await conn.execute(
        text(
            "CREATE INDEX IF NOT EXISTS obs_dead_letters_position "
            "ON obs_dead_letters (topic, kafka_partition, kafka_offset)"
        )
    )
    await conn.run_sync(lambda sync: metadata.create_all(sync, tables=[dead_letter_status]))


async def _v4(conn: AsyncConnection) -> None:
    # The saga map, stuck-flow search and step deadlines: where flows wait. Flows judged
    # before this version get their rows when they are judged again (an event or a sweep).
    await conn.run_sync(lambda sync: metadata.create_all(sync, tables=[waits]))


async def _v5(conn: AsyncConnection) -> None:
    # Human checkpoints: the decisions published through the observer.
    await conn.run_sync(lambda sync: metadata.create_all(sync, tables=[approvals]))


async def _joined_column(conn: AsyncConnection) -> None:
    # Joins: a join's output names its other inputs (ce_joined), each an edge of the graph.
    # Idempotent, so it may come after other steps when branches merge.
    def columns(sync: Any) -> set[str] | None:
        found = inspect(sync)
        if not found.has_table("obs_events"):
            return None
        return {c["name"] for c in found.get_columns("obs_events")}

    present = await conn.run_sync(columns)
    if present is None:
        await conn.run_sync(lambda sync: metadata.create_all(sync, tables=[events]))
    elif "joined" not in present:
        await conn.execute(text("ALTER TABLE obs_events ADD COLUMN joined TEXT"))


MIGRATIONS: tuple[Migration, ...] = (_v1, _v2, _v3, _v4, _v5, _joined_column)
"""Step *n* (1-based) brings the schema from version *n-1* to *n*. Append, never edit:
when a table changes, add a step (ALTER TABLE ...) and change the Table above to match."""

LATEST = len(MIGRATIONS)
_LOCK_KEY = 0x0B5E_5A6A  # any constant: the observers' migration advisory lock


async def migrate(conn: AsyncConnection) -> tuple[int, int]:
    """Bring the schema to :data:`LATEST`; call inside a transaction.

    Returns:
        The version found and the version now.

    Raises:
        ConfigurationError: The database was migrated by a newer observer.
    """
    if conn.dialect.name == "postgresql":
        await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
    await conn.run_sync(lambda sync: metadata.create_all(sync, tables=[schema_version]))
    found = (await conn.execute(select(schema_version.c.version))).scalar()
    current = int(found or 0)
    if current > LATEST:
        raise ConfigurationError(
            f"the observer database is at schema version {current}, newer than this "
            f"observer knows ({LATEST}); run the newer observer, or point CHOREO_OBSERVER_DB "
            "at another database"
        )
    for step in MIGRATIONS[current:]:
        await step(conn)
    if found is None:
        await conn.execute(schema_version.insert().values(id=1, version=LATEST))
    elif current != LATEST:
        await conn.execute(schema_version.update().values(version=LATEST))
    return current, LATEST
