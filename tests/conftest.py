"""Fixtures of every layer.

The brokers start once per session, on free ports: the embedded one (Tansu)
for every test that asks for ``broker`` or ``kafka``, and a one-node Apache
Kafka for the tests marked ``@pytest.mark.engines("tansu", "kafka")``, which
run once per engine with the engine in their id (``test_x[kafka]``). The
three-node cluster starts only for the tests (modules) that ask for it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from choreokit.events import KafkaSettings
from choreokit.services.runtime import EmbeddedBroker, KafkaCluster, KafkaRigError, free_port
from tests.rig.jaeger import Jaeger, JaegerBuildError, build

TESTS = Path(__file__).parent
LAYERS = ("unit", "integration", "e2e", "chaos")
ENGINES = ("tansu", "kafka")

Broker = EmbeddedBroker | KafkaCluster
"""What the ``broker`` fixture gives: either engine, both with ``bootstrap``."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with its layer, from the folder it lives in."""
    for item in items:
        relative = Path(str(item.fspath)).resolve().relative_to(TESTS.resolve())
        if relative.parts and relative.parts[0] in LAYERS:
            item.add_marker(getattr(pytest.mark, relative.parts[0]))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run a test marked ``engines(...)`` once per named engine, through its ``broker``."""
    marker = metafunc.definition.get_closest_marker("engines")
    if marker is None:
        return
    engines = marker.args or ENGINES
    unknown = set(engines) - set(ENGINES)
    if unknown:
        raise pytest.UsageError(f"unknown engine(s) {sorted(unknown)}; known: {list(ENGINES)}")
    if "broker" not in metafunc.fixturenames:
        # A module's mark covers its tests that need no broker too; a test's own mark must mean it.
        if any(mark.name == "engines" for mark in metafunc.definition.own_markers):
            raise pytest.UsageError(
                f"{metafunc.definition.nodeid} is marked engines(...) but uses neither the "
                "'broker' nor the 'kafka' fixture: nothing would differ between its runs"
            )
        return
    # Function scope: the engine's own session fixture holds the broker, this only picks it.
    metafunc.parametrize("broker", engines, indirect=True, scope="function")


@pytest.fixture(scope="session")
def tansu_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """The real embedded broker (Tansu), shared by the session; tests use their own topics."""
    log = tmp_path_factory.mktemp("broker") / "tansu.log"
    embedded = EmbeddedBroker(port=free_port(), log=log)
    embedded.start()
    yield embedded
    embedded.stop()


def start_kafka(nodes: int, directory: Path) -> KafkaCluster:
    """Start an Apache Kafka rig for a fixture, or fail the test saying what is missing."""
    cluster = KafkaCluster(nodes, directory=directory)
    try:
        cluster.start()
    except KafkaRigError as exc:
        pytest.fail(
            f"Apache Kafka ({nodes} node(s)) is needed and did not start: {exc}\n"
            "scripts/test resolves its jars up front; see docs/broker.md"
        )
    return cluster


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    """One Apache Kafka node (KRaft) for the session, started when a test first needs it."""
    cluster = start_kafka(1, tmp_path_factory.mktemp("kafka"))
    yield cluster
    cluster.close()


@pytest.fixture(scope="module")
def kafka_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    """Three Apache Kafka nodes (3 voters, replication 3, min ISR 2), for one test module."""
    cluster = start_kafka(3, tmp_path_factory.mktemp("kafka3"))
    yield cluster
    cluster.close()


@pytest.fixture(scope="session")
def broker(request: pytest.FixtureRequest) -> Broker:
    """The broker of a test: Tansu, or the engine its ``engines`` marker names for this run."""
    engine = getattr(request, "param", "tansu")
    found = request.getfixturevalue(f"{engine}_broker")
    assert isinstance(found, EmbeddedBroker | KafkaCluster)
    return found


@pytest.fixture
def engine(broker: Broker) -> str:
    """The name of the engine a test runs on: ``tansu`` or ``kafka``."""
    return "kafka" if isinstance(broker, KafkaCluster) else "tansu"


@pytest.fixture
def kafka(broker: Broker) -> KafkaSettings:
    """Settings pointing at the test's broker, with the local profile."""
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
