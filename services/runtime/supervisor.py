"""``choreo dev``'s engine: the embedded broker and every service as its own OS process.

Children are started with ``python -P -m choreokit.services.cli run NAME`` (``-P``: the
working directory is not put first on ``sys.path``, so no folder of a user's
project can shadow what the child imports before its services), each with its
log file, its ready file and ``PR_SET_PDEATHSIG`` (if the supervisor dies, so
do they). A child that exits on its own is restarted, with a growing pause if
it keeps dying. Stopping sends SIGTERM to every child, waits, then SIGKILLs
what is left, and stops the broker last.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from choreokit.services.runtime.app import DATA_DIR_ENV, READY_FILE_ENV
from choreokit.services.runtime.child_process import die_with_parent
from choreokit.services.runtime.embedded_broker import EmbeddedBroker

logger = logging.getLogger("choreokit.dev")

STATE_FILE = "dev.json"
HEALTHY_AFTER = 30.0
"""Seconds a restarted child must stay up before its restart pause is reset."""
"""Written to the data directory: bootstrap, URLs and process ids, for tools and tests."""


@dataclass(frozen=True)
class HttpEndpoint:
    """Where a service with an HTTP face listens, and which variable sets its port."""

    port_env: str
    default_port: int
    path: str
    label: str


HTTP_SERVICES: Mapping[str, HttpEndpoint] = {
    "saga-observer": HttpEndpoint("CHOREO_OBSERVER_PORT", 8080, "/", "observer UI"),
    "gateway": HttpEndpoint("CHOREO_GATEWAY_PORT", 8081, "/events", "gateway (POST)"),
    "orders": HttpEndpoint("CHOREO_ORDERS_PORT", 8082, "/orders", "order intake (POST)"),
}


@dataclass
class Child:
    """One supervised service process."""

    name: str
    process: asyncio.subprocess.Process | None = None
    restarts: int = 0
    started_at: float = 0.0
    pause: float = 0.5


@dataclass
class Supervisor:
    """Runs the local system until told to stop.

    Args:
        services: Service names to run (``choreo run`` entry points).
        data_dir: Logs, ready files, databases and ``dev.json`` go here.
        broker_host: Interface of the embedded broker.
        broker_port: Its port.
        bootstrap: Use this Kafka instead of starting the embedded broker.
        env: Extra environment for every child.
        service_env: Extra environment of one child, by service name, on top of ``env``
            (its own Kafka principal: ``CHOREO_KAFKA_SASL_USERNAME``, ``_PASSWORD``).
    """

    services: Sequence[str]
    data_dir: Path
    broker_host: str = "127.0.0.1"
    broker_port: int = 9092
    bootstrap: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    service_env: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    children: dict[str, Child] = field(default_factory=dict)
    _broker: EmbeddedBroker | None = None
    _stopping: bool = False

    @property
    def kafka(self) -> str:
        """The bootstrap address the children use."""
        return self.bootstrap or f"{self.broker_host}:{self.broker_port}"

    def urls(self) -> dict[str, str]:
        """HTTP URLs of the services that have one, by service name."""
        out = {}
        for name in self.services:
            endpoint = HTTP_SERVICES.get(name)
            if endpoint is not None:
                port = self._child_env(name).get(endpoint.port_env, str(endpoint.default_port))
                out[name] = f"http://127.0.0.1:{port}{endpoint.path}"
        return out

    async def start(self, ready_timeout: float = 90.0) -> None:
        """Start the broker and every service; return once all of them are ready."""
        for sub in ("logs", "run"):
            (self.data_dir / sub).mkdir(parents=True, exist_ok=True)
        if self.bootstrap is None:
            self._broker = EmbeddedBroker(
                self.broker_host, self.broker_port, log=self.data_dir / "logs" / "broker.log"
            )
            self._broker.start()
        for name in self.services:
            self.children[name] = Child(name)
            await self._spawn(self.children[name])
        deadline = time.monotonic() + ready_timeout
        while not all(self._ready_file(n).exists() for n in self.services):
            for child in self.children.values():
                if child.process is not None and child.process.returncode is not None:
                    raise RuntimeError(
                        f"{child.name} exited with code {child.process.returncode} while "
                        f"starting; see {self._log_file(child.name)}"
                    )
            if time.monotonic() > deadline:
                waiting = [n for n in self.services if not self._ready_file(n).exists()]
                raise RuntimeError(
                    f"not ready after {ready_timeout:.0f}s: {', '.join(waiting)}; "
                    f"see the logs in {self.data_dir / 'logs'}"
                )
            await asyncio.sleep(0.1)
        self._write_state(ready=True)

    async def watch(self, stop: asyncio.Event) -> None:
        """Restart children that exit on their own, until ``stop`` is set."""
        while not stop.is_set():
            waits = {
                asyncio.ensure_future(child.process.wait()): child
                for child in self.children.values()
                if child.process is not None
            }
            stopper = asyncio.ensure_future(stop.wait())
            done, pending = await asyncio.wait(
                [*waits, stopper], return_when=asyncio.FIRST_COMPLETED
            )
            for task in pending:
                task.cancel()
            if stop.is_set():
                return
            for task in done:
                child = waits.get(task)
                if child is not None:
                    await self._restart(child, stop)

    async def _restart(self, child: Child, stop: asyncio.Event) -> None:
        assert child.process is not None
        code = child.process.returncode
        if time.monotonic() - child.started_at > HEALTHY_AFTER:
            child.pause = 0.5
        logger.warning(
            "%s exited with code %s; restarting it in %.1fs (see %s)",
            child.name,
            code,
            child.pause,
            self._log_file(child.name),
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), child.pause)
        if stop.is_set():
            return
        child.pause = min(child.pause * 2, 10.0)
        child.restarts += 1
        await self._spawn(child)
        logger.warning(
            "%s restarted (pid %s)", child.name, child.process.pid if child.process else "?"
        )

    async def stop(self, grace: float = 15.0) -> None:
        """SIGTERM every child, SIGKILL what is left after ``grace``, then stop the broker."""
        self._stopping = True
        running = [
            c.process for c in self.children.values() if c.process and c.process.returncode is None
        ]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        if running:
            _, late = await asyncio.wait(
                [asyncio.ensure_future(p.wait()) for p in running], timeout=grace
            )
            for process in running:
                if process.returncode is None:
                    logger.warning(
                        "pid %s ignored SIGTERM for %.0fs; killing it", process.pid, grace
                    )
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
                    await process.wait()
            for task in late:
                task.cancel()
        if self._broker is not None:
            self._broker.stop()
        state = self.data_dir / STATE_FILE
        state.unlink(missing_ok=True)

    async def _spawn(self, child: Child) -> None:
        self._ready_file(child.name).unlink(missing_ok=True)
        log = self._log_file(child.name).open("ab")
        try:
            child.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-P",
                "-m",
                "choreokit.services.cli",
                "run",
                child.name,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=self._child_env(child.name),
                preexec_fn=die_with_parent,
            )
        finally:
            log.close()
        child.started_at = time.monotonic()
        self._write_state(ready=False)

    def _child_env(self, name: str) -> dict[str, str]:
        env = {**os.environ, **self.env, **self.service_env.get(name, {})}
        env["CHOREO_KAFKA_BOOTSTRAP"] = self.kafka
        env[DATA_DIR_ENV] = str(self.data_dir.resolve())
        env[READY_FILE_ENV] = str(self._ready_file(name).resolve())
        env.setdefault("OTEL_SERVICE_NAME", name)
        env["OTEL_SERVICE_NAME"] = name
        env["PYTHONUNBUFFERED"] = "1"
        # Consumer-only services serve /metrics and /healthz; on one host, on any free port.
        env["CHOREO_METRICS_PORT"] = "0"
        return env

    def _ready_file(self, name: str) -> Path:
        return self.data_dir / "run" / f"{name}.ready"

    def _log_file(self, name: str) -> Path:
        return self.data_dir / "logs" / f"{name}.log"

    def _write_state(self, *, ready: bool) -> None:
        pids = {
            name: child.process.pid
            for name, child in self.children.items()
            if child.process is not None
        }
        if self._broker is not None and self._broker.pid is not None:
            pids["broker"] = self._broker.pid
        state = {
            "bootstrap": self.kafka,
            "urls": self.urls(),
            "pids": pids,
            "restarts": {name: child.restarts for name, child in self.children.items()},
            "supervisor": os.getpid(),
            "ready": ready or all(self._ready_file(n).exists() for n in self.services),
        }
        path = self.data_dir / STATE_FILE
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(state, indent=2))
        temporary.replace(path)


def load_service_env(pattern: str, services: Sequence[str]) -> dict[str, dict[str, str]]:
    """Each service's environment file (``KEY=VALUE`` lines), ``{service}`` in ``pattern``.

    Raises:
        FileNotFoundError: A service has no file, naming the one expected.
    """
    from dotenv import dotenv_values

    out: dict[str, dict[str, str]] = {}
    for name in services:
        path = Path(pattern.replace("{service}", name))
        if not path.is_file():
            raise FileNotFoundError(
                f"no environment file {path} for service {name} (--service-env {pattern}): "
                "create it, e.g. with CHOREO_KAFKA_SASL_USERNAME and CHOREO_KAFKA_SASL_PASSWORD"
            )
        out[name] = {k: v for k, v in dotenv_values(path).items() if v is not None}
    return out


def read_state(data_dir: Path) -> dict[str, object] | None:
    """``dev.json`` of a running ``choreo dev`` in ``data_dir``, if there is one."""
    path = data_dir / STATE_FILE
    try:
        state: dict[str, object] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return state
