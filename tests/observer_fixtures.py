"""Fixtures and runners for the saga observer's integration and end-to-end tests.

The observer reads *every* topic, so each test gets a broker of its own
(:func:`private_kafka`) rather than the session's shared one. Import the
fixtures a test module uses by name (``# noqa: F401`` - they are fixtures).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from choreokit.events import KafkaSettings
from choreokit.events._kafka import ensure_topics
from choreokit.services.example.contracts.saga import ORDER_SAGA
from choreokit.services.runtime import EmbeddedBroker, free_port
from choreokit.services.runtime.app import Runtime
from choreokit.services.runtime.database import create_engine
from choreokit.services.saga_observer import SagaCatalog
from choreokit.services.saga_observer.app import ObserverApp
from choreokit.services.saga_observer.queries import Queries
from choreokit.services.saga_observer.settings import ObserverSettings
from choreokit.services.saga_observer.store import open_engines
from tests.integration.kafka_io import end_offsets
from tests.order_flows import DOMAIN_TOPICS
from tests.support import unique

POSTGRES_ENV = "CHOREO_TEST_POSTGRES_URL"
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
CHOREO = Path(sys.executable).parent / "choreo"
T = TypeVar("T")


@pytest.fixture
def private_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """A broker for this test alone: the observer reads every topic there is."""
    embedded = EmbeddedBroker(port=free_port(), log=tmp_path / "tansu.log")
    embedded.start()
    yield embedded
    embedded.stop()


@pytest.fixture
def private_kafka(private_broker: EmbeddedBroker) -> KafkaSettings:
    """Settings pointing at the private broker."""
    return KafkaSettings(bootstrap=private_broker.bootstrap)


@pytest.fixture
def postgres_databases() -> Iterator[Callable[[], str]]:
    """Creates databases on the server of ``$CHOREO_TEST_POSTGRES_URL``; drops them after."""
    base = os.environ.get(POSTGRES_ENV, DEFAULT_POSTGRES)
    url = make_url(base)
    created: list[str] = []

    async def admin(statement: str) -> None:
        engine = create_engine(base, isolation_level="AUTOCOMMIT", connect_args={"timeout": 10})
        try:
            async with engine.connect() as conn:
                await conn.execute(text(statement))
        finally:
            await engine.dispose()

    def create() -> str:
        name = unique("observer_")
        try:
            asyncio.run(admin(f'CREATE DATABASE "{name}"'))
        except (OSError, SQLAlchemyError) as exc:
            pytest.fail(
                f"PostgreSQL at {base} is not usable ({type(exc).__name__}: {exc}); run the suite "
                "through scripts/test (it starts a throwaway server), "
                f"or set {POSTGRES_ENV}=postgresql://USER@HOST:PORT/DB to a server where "
                "databases may be created"
            )
        created.append(name)
        return url.set(database=name).render_as_string(hide_password=False)

    yield create
    for name in created:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def postgres_database(postgres_databases: Callable[[], str]) -> str:
    """One database created for this test (dropped after it)."""
    return postgres_databases()


def catalog() -> SagaCatalog:
    """The order saga, as the observer loads it."""
    return SagaCatalog([ORDER_SAGA])


async def snapshot(db: str) -> dict[str, Any]:
    """The canonical projection held by the database at ``db``."""
    writer, reader = open_engines(db)
    try:
        return await Queries(reader, catalog(), group="-", jaeger_url="-").snapshot()
    finally:
        await writer.dispose()
        if reader is not writer:
            await reader.dispose()


async def log_ends(kafka: KafkaSettings, topics: Sequence[str]) -> dict[tuple[str, int], int]:
    """The end offset of every partition of ``topics``."""
    found = {}
    for topic in topics:
        for partition, offset in (await end_offsets(kafka.bootstrap, topic)).items():
            found[(topic, partition)] = offset
    return found


@dataclass
class RunningObserver:
    """An observer running in this process, and an HTTP client for it."""

    app: ObserverApp
    client: httpx.AsyncClient
    url: str

    async def get(self, path: str, **params: Any) -> Any:
        response = await self.client.get(path, params=params)
        response.raise_for_status()
        return response.json()

    async def wait(
        self, what: str, predicate: Any, *, timeout: float = 60.0, path: str = "/api/counts"
    ) -> Any:
        """Poll ``path`` until ``predicate(json)`` holds; return that answer."""
        deadline = time.monotonic() + timeout
        while True:
            response = await self.client.get(path)
            if response.status_code != 404:  # a flow not seen yet is a 404
                response.raise_for_status()
            body = response.json()
            if response.status_code != 404 and predicate(body):
                return body
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}: {body}")
            await asyncio.sleep(0.1)  # noqa: sleep-ok - polls the observer's API


@contextlib.asynccontextmanager
async def running_observer(
    kafka: KafkaSettings,
    db: str,
    data_dir: Path,
    *,
    sagas: SagaCatalog | None = None,
    **overrides: Any,
) -> AsyncIterator[RunningObserver]:
    """Run the observer in this process until the block ends (judging by ``sagas`` if given)."""
    settings = ObserverSettings(
        db=db, port=free_port(), topic_refresh=timedelta(seconds=1), **overrides
    )
    app = ObserverApp(
        Runtime(name="saga-observer", kafka=kafka, data_dir=data_dir),
        settings,
        # The example's order saga, as `choreo dev` (CHOREO_EXAMPLE=1) gives it to the observer;
        # a test that brings its own specs (YAML) is judged by those alone.
        catalog=sagas or (None if settings.specs else catalog().with_timeout(settings.timeout)),
    )
    stop = asyncio.Event()
    task = asyncio.ensure_future(app.run(stop))
    ready = asyncio.ensure_future(app.ready.wait())
    await asyncio.wait({task, ready}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        ready.cancel()
        task.result()
        raise AssertionError("the observer stopped while starting")
    if not ready.done():
        ready.cancel()
        stop.set()
        await task
        raise AssertionError("the observer did not start within 60s")
    url = f"http://127.0.0.1:{app.port}"
    try:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            yield RunningObserver(app, client, url)
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


class ObserverProcess:
    """``choreo run saga-observer`` in a child process, as a container runs it."""

    def __init__(
        self,
        kafka: KafkaSettings,
        db: str,
        data_dir: Path,
        *,
        group: str = "saga-observer",
        env: Mapping[str, str] | None = None,
        name: str = "observer",
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = data_dir / f"{name}-{self.port}.log"
        self.env = {
            **os.environ,
            "CHOREO_KAFKA_BOOTSTRAP": kafka.bootstrap,
            "CHOREO_OBSERVER_DB": db,
            "CHOREO_OBSERVER_PORT": str(self.port),
            "CHOREO_OBSERVER_GROUP": group,
            "CHOREO_OBSERVER_TOPIC_REFRESH": "1s",
            "CHOREO_DATA_DIR": str(data_dir),
            "CHOREO_LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
            "CHOREO_EXAMPLE": "1",  # the flows fed to it are the example's: judge its saga
            **(env or {}),
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ObserverProcess:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [str(CHOREO), "run", "saga-observer"],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def get(self, path: str, **params: Any) -> Any:
        response = httpx.get(self.url + path, params=params, timeout=10)
        response.raise_for_status()
        return response.json()

    def try_get(self, path: str, **params: Any) -> Any | None:
        """The answer, or ``None`` while the process is not serving."""
        self.check_alive()
        try:
            return self.get(path, **params)
        except httpx.HTTPError:
            return None

    def check_alive(self) -> None:
        assert self.process is not None
        code = self.process.poll()
        if code is not None:
            raise AssertionError(f"the observer exited with {code}; see {self.log}:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind, as in a crash."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> int:
        """SIGTERM, as a container runtime stops it; return the exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def blocking(work: Coroutine[Any, Any, T]) -> T:
    """Run ``work`` to completion from synchronous code, even where a loop runs (Playwright)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, work).result()


async def create_domain_topics(kafka: KafkaSettings) -> None:
    """The reference domain's topics and the observer's own, before any observer joins."""
    await ensure_topics(kafka, [*DOMAIN_TOPICS, "sagas"])
