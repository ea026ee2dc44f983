"""Fresh databases for a scenario: a SQLite file, or a PostgreSQL database made and dropped."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url

from choreokit.services.runtime.database import create_engine


@contextlib.asynccontextmanager
async def fresh_database(backend: str, workdir: Path, postgres: str | None) -> AsyncIterator[str]:
    """Yield the URL of an empty database on ``backend`` (``sqlite`` or ``postgresql``)."""
    if backend == "sqlite":
        yield f"sqlite:///{workdir / f'bench-{uuid.uuid4().hex[:8]}.sqlite3'}"
        return
    if postgres is None:
        raise RuntimeError("no PostgreSQL: set CHOREO_BENCH_POSTGRES_URL")
    name = f"bench_{uuid.uuid4().hex[:10]}"
    await _admin(postgres, f'CREATE DATABASE "{name}"')
    try:
        yield make_url(postgres).set(database=name).render_as_string(hide_password=False)
    finally:
        await _admin(postgres, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _admin(url: str, statement: str) -> None:
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(statement))
    finally:
        await engine.dispose()
