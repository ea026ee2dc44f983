"""Fixtures of every layer; the embedded broker starts once per session, on a free port."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from choreokit.events import KafkaSettings
from choreokit.services.runtime import EmbeddedBroker, free_port
from tests.rig.jaeger import Jaeger, JaegerBuildError, build

TESTS = Path(__file__).parent
LAYERS = ("unit", "integration", "e2e")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with its layer, from the folder it lives in."""
    for item in items:
        relative = Path(str(item.fspath)).resolve().relative_to(TESTS.resolve())
        if relative.parts and relative.parts[0] in LAYERS:
            item.add_marker(getattr(pytest.mark, relative.parts[0]))


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """The real embedded broker (Tansu), shared by the session; tests use their own topics."""
    log = tmp_path_factory.mktemp("broker") / "tansu.log"
    embedded = EmbeddedBroker(port=free_port(), log=log)
    embedded.start()
    yield embedded
    embedded.stop()


@pytest.fixture
def kafka(broker: EmbeddedBroker) -> KafkaSettings:
    """Settings pointing at the session's broker, with the local profile."""
    return KafkaSettings(bootstrap=broker.bootstrap)


@pytest.fixture(scope="session")
def jaeger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Jaeger]:
    """A real Jaeger v2 (in-memory store, free loopback ports), shared by the session.

    Built with ``go install`` on first use and cached (tests/rig/jaeger.py); tests tell
    their traces apart by flow id. Its log: the session's ``jaeger0/jaeger.log``.
    """
    try:
        build()
    except JaegerBuildError as exc:
        pytest.fail(str(exc))
    with Jaeger(tmp_path_factory.mktemp("jaeger") / "jaeger.log") as running:
        yield running
    assert running.process is not None
    assert running.process.returncode == 0, f"Jaeger stopped badly:\n{running.tail()}"


POSTGRES_ENV = "CHOREO_TEST_POSTGRES_URL"
POSTGRES_DEFAULT = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test, dropped afterwards.

    The server comes from $CHOREO_TEST_POSTGRES_URL (default: the local server).
    """
    import asyncio
    import uuid

    import asyncpg
    from sqlalchemy.engine import make_url

    base = make_url(os.environ.get(POSTGRES_ENV, POSTGRES_DEFAULT))
    name = f"choreo_test_{uuid.uuid4().hex[:12]}"
    admin_dsn = base.set(drivername="postgresql").render_as_string(hide_password=False)

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(admin_dsn, timeout=10)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    try:
        asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(
            f"PostgreSQL is needed and not reachable at {base.render_as_string()} ({exc}); "
            f"set {POSTGRES_ENV} to a server where this user may CREATE DATABASE, "
            "or run the suite through scripts/test, which starts a throwaway one"
        )
    yield base.set(database=name).render_as_string(hide_password=False)
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test on SQLite (a file) and on PostgreSQL (a fresh database)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'service.sqlite3'}"
    url = request.getfixturevalue("postgres_url")
    assert isinstance(url, str)
    return url
