"""docker-compose.yml run without Docker: each choreokit service as the process its container runs.

No Docker engine runs here, so :class:`ComposeRun` reads the compose file as compose does
(YAML anchors and merge keys, ``${VAR:-default}`` interpolation), the Dockerfile's
``ENV``, ``ENTRYPOINT``, ``CMD`` and ``HEALTHCHECK``, and starts every service that is built
from this repository as its own OS process: the image's entrypoint with the service's
``command``, the image's environment overlaid with the service's ``environment``, in
``depends_on`` order, each condition waited for (``service_started``, ``service_healthy`` by
running the healthcheck command until it passes within ``start_period + interval *
retries``, ``service_completed_successfully`` by waiting for exit code 0).

The infrastructure services (``kafka``, ``postgres``, ``jaeger``) are the test rig's: their
compose hostnames are rewritten to the rig's addresses (``kafka:9092``, ``postgres:5432``,
``jaeger:4317``), databases are created as ``deploy/postgres/init.sql`` says (under a
per-run prefix on the shared test server), container paths (``CHOREO_DATA_DIR``,
``CHOREO_READY_FILE``) move under a per-service directory, ``0.0.0.0`` binds become
``127.0.0.1``, and every container port (the metrics port ``CHOREO_METRICS_PORT`` too)
becomes a free local port.

Files reach a process where its container would see them: a service's ``env_file`` is read
under its ``environment``; each mount (``./host:/container``, a named volume, a compose
``secret`` at ``/run/secrets/<name>``) becomes a local path, and a container path in the
service's environment or command names that local path instead. The compose file's
``./deploy/secrets`` is the directory ``scripts/compose-secrets`` wrote for this run
(``secrets_dir``); a compose secret may be swapped for the rig's file (``secret_files``: the
rig's Kafka has its own certificate, so ``kafka-ca`` is the rig's CA). A service run from
another image than ours (the ``acls`` job, on the Kafka image) needs a stand-in
(``stand_ins``), which does in-process what its container would and fails as it would.

What this cannot check (the image build, container networking, volumes, restart policies) is
listed in docs/deployment.md.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import yaml

from choreokit.services.runtime.status import DEFAULT_PORT

ROOT = Path(__file__).resolve().parents[2]
METRICS_PORT = DEFAULT_PORT
"""The image's /metrics and /healthz port of a consumer-only service (``CHOREO_METRICS_PORT``)."""
INFRASTRUCTURE = frozenset({"kafka", "postgres", "jaeger"})
"""Compose services the rig provides instead of running their images."""

_INTERPOLATION = re.compile(
    r"\$(?:\$|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?])?(?P<arg>[^}]*)\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)
_DURATION = re.compile(r"(?P<n>\d+(?:\.\d+)?)(?P<unit>ms|s|m|h)")


class ComposeError(RuntimeError):
    """The compose file cannot be run as written, or a service did not come up."""


def interpolate(value: str, variables: Mapping[str, str]) -> str:
    """Compose interpolation: ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``, ``$$``."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group("name") or match.group("bare")
        op, arg = match.group("op"), match.group("arg") or ""
        present = name in variables
        current = variables.get(name, "")
        if op == ":-":
            return current if current else arg
        if op == "-":
            return current if present else arg
        if op in (":?", "?") and (not present or (op == ":?" and not current)):
            raise ComposeError(f"${{{name}}} must be set: {arg}")
        return current

    return _INTERPOLATION.sub(replace, value)


def _interpolate_tree(node: Any, variables: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, variables)
    if isinstance(node, list):
        return [_interpolate_tree(item, variables) for item in node]
    if isinstance(node, dict):
        return {key: _interpolate_tree(item, variables) for key, item in node.items()}
    return node


def load_compose(path: Path, variables: Mapping[str, str]) -> dict[str, Any]:
    """The compose file with anchors, merge keys and interpolation resolved."""
    raw = yaml.safe_load(path.read_text())  # safe_load resolves anchors and '<<' merge keys
    resolved: dict[str, Any] = _interpolate_tree(raw, variables)
    return resolved


def duration(text: str | None, default: float) -> float:
    """A compose duration (``5s``, ``1m30s``, ``500ms``) in seconds."""
    if not text:
        return default
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    parts = list(_DURATION.finditer(str(text)))
    if not parts or "".join(p.group(0) for p in parts) != str(text):
        raise ComposeError(f"not a compose duration: {text!r}")
    return sum(float(p.group("n")) * scale[p.group("unit")] for p in parts)


@dataclass(frozen=True)
class Image:
    """What the Dockerfile's final stage gives every container."""

    env: dict[str, str]
    entrypoint: list[str]
    cmd: list[str]
    healthcheck: dict[str, Any] | None


def read_dockerfile(path: Path) -> Image:
    """ENV, ENTRYPOINT, CMD and HEALTHCHECK of the Dockerfile's last stage (exec form)."""
    lines: list[str] = []
    for raw in re.sub(r"\\\n", " ", path.read_text()).splitlines():
        stripped = raw.strip()
        if stripped and not stripped.startswith("#"):
            lines.append(stripped)
    last = max(i for i, line in enumerate(lines) if line.upper().startswith("FROM "))
    env: dict[str, str] = {}
    entrypoint: list[str] = []
    cmd: list[str] = []
    healthcheck: dict[str, Any] | None = None
    for line in lines[last + 1 :]:
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "ENV":
            for token in shlex.split(rest):
                key, _, value = token.partition("=")
                env[key] = value
        elif keyword == "ENTRYPOINT":
            entrypoint = list(json.loads(rest))
        elif keyword == "CMD":
            cmd = list(json.loads(rest))
        elif keyword == "HEALTHCHECK":
            options, _, command = rest.partition("CMD ")
            check: dict[str, Any] = {"test": ["CMD", *json.loads(command)]}
            for option in options.split():
                key, _, value = option.removeprefix("--").partition("=")
                check[key.replace("-", "_")] = value
            healthcheck = check
    return Image(env=env, entrypoint=entrypoint, cmd=cmd, healthcheck=healthcheck)


@dataclass(frozen=True)
class Rig:
    """The addresses standing in for the compose file's infrastructure services."""

    kafka_bootstrap: str
    postgres_url: str
    """A server URL whose user may CREATE DATABASE; the database part is replaced."""
    jaeger_otlp_grpc: str
    jaeger_otlp_http: str
    jaeger_query: str


@dataclass
class Process:
    """One compose service running as a local process."""

    name: str
    argv: list[str]
    env: dict[str, str]
    directory: Path
    popen: subprocess.Popen[bytes]
    log: Path
    ports: dict[int, int] = field(default_factory=dict)
    """Container port -> local port."""

    def tail(self, lines: int = 40) -> str:
        """The end of the service's output, for failure messages."""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def _topological(services: Mapping[str, Any]) -> list[str]:
    order: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in order:
            return
        if name in visiting:
            raise ComposeError(f"depends_on cycle through {name}")
        visiting.add(name)
        for needed in _depends_on(services[name]):
            visit(needed)
        visiting.discard(name)
        order.append(name)

    for name in services:
        visit(name)
    return order


def _depends_on(service: Mapping[str, Any]) -> dict[str, str]:
    needs = service.get("depends_on") or {}
    if isinstance(needs, list):
        return dict.fromkeys(needs, "service_started")
    return {
        name: str((spec or {}).get("condition", "service_started")) for name, spec in needs.items()
    }


SECRETS = "deploy/secrets"
"""Where docker-compose.yml expects what ``scripts/compose-secrets`` makes."""

StandIn = Callable[["ComposeRun", str], None]
"""Does what a one-shot job of a foreign image would; raises :class:`ComposeError` if it fails."""


def read_env_file(path: Path) -> dict[str, str]:
    """A compose ``env_file``: ``KEY=VALUE`` lines, ``#`` comments and blank lines skipped."""
    values: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise ComposeError(f"{path}:{number}: not KEY=VALUE")
        values[key.strip()] = value
    return values


class ComposeRun:
    """Every service of ``docker-compose.yml`` built from this repository, as local processes.

    Args:
        rig: The rig's Kafka, PostgreSQL and Jaeger.
        directory: Per-service state and logs go under it.
        variables: The shell environment compose would interpolate from (``.env``).
        overrides: Environment set on every service after the compose file's, each one a
            documented deviation (the test says why).
        secrets_dir: What ``scripts/compose-secrets`` wrote, standing in for ``./deploy/secrets``.
        secret_files: Compose secrets given another file than the compose file names.
        stand_ins: One-shot services of foreign images, by name, and what does their work.
    """

    def __init__(
        self,
        rig: Rig,
        directory: Path,
        *,
        variables: Mapping[str, str],
        overrides: Mapping[str, str] | None = None,
        secrets_dir: Path | None = None,
        secret_files: Mapping[str, Path] | None = None,
        stand_ins: Mapping[str, StandIn] | None = None,
        compose_file: Path = ROOT / "docker-compose.yml",
        dockerfile: Path = ROOT / "Dockerfile",
    ) -> None:
        self.rig = rig
        self.directory = directory
        self.project = compose_file.parent
        self.compose = load_compose(compose_file, variables)
        self.image = read_dockerfile(dockerfile)
        self.overrides = dict(overrides or {})
        self.secrets_dir = secrets_dir
        self.secret_files = dict(secret_files or {})
        self.stand_ins = dict(stand_ins or {})
        self.prefix = f"compose_{os.getpid()}_{int(time.time())}"
        self.databases: dict[str, str] = {}
        self.processes: dict[str, Process] = {}
        self.completed: dict[str, int] = {}
        self.published: dict[str, dict[int, int]] = {}
        """Service -> published host port -> the local port it became."""

    # -- the rig's side ---------------------------------------------------------------------

    def _admin(self, sql: str) -> None:
        import asyncio

        import asyncpg
        from sqlalchemy.engine import make_url

        dsn = make_url(self.rig.postgres_url).set(drivername="postgresql")

        async def run() -> None:
            conn = await asyncpg.connect(dsn.render_as_string(hide_password=False), timeout=10)
            try:
                await conn.execute(sql)
            finally:
                await conn.close()

        asyncio.run(run())

    def ping_postgres(self) -> None:
        """Raise if the rig's PostgreSQL server does not answer."""
        self._admin("SELECT 1")

    def create_databases(self, init_sql: Path = ROOT / "deploy/postgres/init.sql") -> None:
        """CREATE DATABASE as the init script says, each name under this run's prefix."""
        for name in re.findall(r"CREATE DATABASE (\w+);", init_sql.read_text()):
            local = f"{self.prefix}_{name}"
            self._admin(f'CREATE DATABASE "{local}"')
            self.databases[name] = local

    def drop_databases(self) -> None:
        """Drop what :meth:`create_databases` made."""
        for local in self.databases.values():
            self._admin(f'DROP DATABASE IF EXISTS "{local}" WITH (FORCE)')

    def _rewrite(self, value: str, ports: Mapping[int, int]) -> str:
        from sqlalchemy.engine import make_url

        if value.startswith("postgresql://") and "@postgres:" in value:
            url = make_url(value)
            base = make_url(self.rig.postgres_url)
            database = self.databases.get(str(url.database))
            if database is None:
                raise ComposeError(f"{value}: deploy/postgres/init.sql never creates that database")
            return base.set(database=database).render_as_string(hide_password=False)
        value = value.replace("kafka:9092", self.rig.kafka_bootstrap)
        value = value.replace("http://jaeger:4317", self.rig.jaeger_otlp_grpc)
        value = value.replace("http://jaeger:4318", self.rig.jaeger_otlp_http)
        value = value.replace("http://localhost:16686", self.rig.jaeger_query)
        if value in {"0.0.0.0", "::"}:
            return "127.0.0.1"
        if value.isdigit() and int(value) in ports:
            return str(ports[int(value)])
        return value

    # -- files ------------------------------------------------------------------------------

    def host_path(self, path: str) -> Path:
        """A host path of the compose file (relative to its folder), as this run has it."""
        if Path(path).is_absolute():
            return Path(path)
        relative = Path(os.path.normpath(path))
        secrets = Path(SECRETS).parts
        if relative.parts[: len(secrets)] == secrets:
            if self.secrets_dir is None:
                raise ComposeError(f"{path}: run scripts/compose-secrets (give secrets_dir)")
            return self.secrets_dir.joinpath(*relative.parts[len(secrets) :])
        return self.project / relative

    def mounts(self, name: str) -> dict[str, Path]:
        """Container path -> local path of every volume and secret ``name`` mounts."""
        service = self.compose["services"][name]
        mounts: dict[str, Path] = {}
        for entry in service.get("volumes", []) or []:
            source, _, rest = str(entry).partition(":")
            target = rest.split(":")[0]
            if source.startswith((".", "/")):
                mounts[target] = self.host_path(source)
            else:  # a named volume: one directory per run, shared by whoever mounts it
                local = self.directory / "volumes" / source
                local.mkdir(parents=True, exist_ok=True)
                mounts[target] = local
        for secret in service.get("secrets", []) or []:
            secret_name = str(secret if isinstance(secret, str) else secret["source"])
            target = f"/run/secrets/{secret_name}"
            if secret_name in self.secret_files:
                mounts[target] = self.secret_files[secret_name]
                continue
            declared = (self.compose.get("secrets") or {}).get(secret_name)
            if not declared or "file" not in declared:
                raise ComposeError(f"{name}: secret {secret_name!r} names no file")
            mounts[target] = self.host_path(str(declared["file"]))
        return mounts

    def local_path(self, name: str, text: str) -> str:
        """``text`` with every container path ``name`` mounts replaced by its local path."""
        mounts = self.mounts(name)
        for target in sorted(mounts, key=len, reverse=True):
            pattern = rf"(?<![\w/.-]){re.escape(target)}(?=/|$|[\s;&|>)\"'])"
            text = re.sub(pattern, str(mounts[target]).replace("\\", r"\\"), text)
        return text

    # -- services ---------------------------------------------------------------------------

    def runnable(self) -> list[str]:
        """The services this repository's image runs, in depends_on order."""
        services = self.compose["services"]
        order = _topological(services)
        return [name for name in order if name not in INFRASTRUCTURE]

    def _container_ports(self, name: str, service: Mapping[str, Any]) -> dict[int, int]:
        from choreokit.services.runtime import free_port

        ports: dict[int, int] = {}
        published: dict[int, int] = {}
        for entry in service.get("ports", []) or []:
            host, _, container = str(entry).rpartition(":")
            local = free_port()
            ports[int(container)] = local
            published[int(host or container)] = local
        for entry in service.get("expose", []) or []:
            ports.setdefault(int(entry), free_port())
        # Each container has ports of its own: the consumer-only services' /metrics and
        # /healthz port (the image's default, set by no compose entry) gets a free one each.
        ports.setdefault(METRICS_PORT, free_port())
        self.published[name] = published
        return ports

    def environment(self, name: str) -> tuple[dict[str, str], dict[int, int]]:
        """The environment of ``name``'s process (image, compose, rewrites, overrides)."""
        service = self.compose["services"][name]
        ports = self._container_ports(name, service)
        state = self.directory / name
        env: dict[str, str] = {
            # What the base image's shell gives a process, pointed at this checkout's venv.
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "HOME": str(state),
            "LANG": "C.UTF-8",
        }
        env.update(self.image.env)
        env_files = service.get("env_file") or []
        for env_file in [env_files] if isinstance(env_files, str) else env_files:
            path = env_file if isinstance(env_file, str) else env_file["path"]
            env.update(read_env_file(self.host_path(str(path))))
        compose_env = service.get("environment") or {}
        if isinstance(compose_env, list):
            compose_env = dict(str(item).partition("=")[::2] for item in compose_env)
        env.update({str(k): "" if v is None else str(v) for k, v in compose_env.items()})
        env = {
            key: self.local_path(name, self._rewrite(value, ports)) for key, value in env.items()
        }
        env.setdefault("CHOREO_METRICS_PORT", str(ports[METRICS_PORT]))
        env["CHOREO_DATA_DIR"] = str(state / "data")
        env["CHOREO_READY_FILE"] = str(state / "choreo.ready")
        env.update(self.overrides)
        return env, ports

    def argv(self, name: str) -> list[str]:
        """ENTRYPOINT + (the service's command or the image's CMD), as the container runs it."""
        service = self.compose["services"][name]
        command = service.get("command", self.image.cmd)
        if isinstance(command, str):
            command = shlex.split(command)
        entrypoint = service.get("entrypoint", self.image.entrypoint)
        return [str(part) for part in [*entrypoint, *command]]

    def local_argv(self, name: str, ports: Mapping[int, int] | None = None) -> list[str]:
        """:meth:`argv` with compose hostnames and container paths made this run's."""
        rewritten = [self._rewrite(part, ports or {}) for part in self.argv(name)]
        return [self.local_path(name, part) for part in rewritten]

    def healthcheck(self, name: str) -> dict[str, Any] | None:
        """The service's healthcheck: compose's, else the image's; ``None`` if disabled."""
        own = self.compose["services"][name].get("healthcheck")
        if own is not None and own.get("disable"):
            return None
        check = dict(self.image.healthcheck or {})
        check.update(own or {})
        return check if check.get("test") else None

    def wait_for_dependencies(self, name: str) -> None:
        """Return once what ``name`` depends on is started, healthy or completed."""
        for needed, condition in _depends_on(self.compose["services"][name]).items():
            if needed in INFRASTRUCTURE:
                continue  # the rig's fixtures are up (and healthy) before the run starts
            if condition == "service_completed_successfully":
                if self.completed.get(needed) != 0:
                    raise ComposeError(f"{name} needs {needed} to complete successfully first")
            elif needed not in self.processes:
                raise ComposeError(f"{name} needs {needed} started first")
            elif condition == "service_healthy":
                self.wait_healthy(needed)

    def start(self, name: str) -> Process:
        """Start ``name`` once what it depends on is started, healthy or completed."""
        self.wait_for_dependencies(name)
        if name in self.stand_ins or "build" not in self.compose["services"][name]:
            raise ComposeError(f"{name} runs another image than ours: give it a stand-in")
        env, ports = self.environment(name)
        state = self.directory / name
        (state / "data").mkdir(parents=True, exist_ok=True)
        log_path = state / "output.log"
        argv = self.local_argv(name, ports)
        executable = shutil.which(argv[0], path=env["PATH"])
        if executable is None:
            raise ComposeError(f"{name}: {argv[0]} is not on the image's PATH here")
        log: IO[bytes] = log_path.open("ab")
        popen = subprocess.Popen(
            [executable, *argv[1:]],
            cwd=state,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        process = Process(name, argv, env, state, popen, log_path, ports)
        self.processes[name] = process
        return process

    def run_to_completion(self, name: str, timeout: float = 120) -> int:
        """Run a one-shot service (``restart: "no"``) and record its exit code."""
        if name in self.stand_ins:
            self.wait_for_dependencies(name)
            self.stand_ins[name](self, name)  # raises ComposeError where the job would fail
            self.completed[name] = 0
            return 0
        process = self.start(name)
        try:
            code = process.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise ComposeError(
                f"{name} did not finish within {timeout}s:\n{process.tail()}"
            ) from exc
        self.completed[name] = code
        if code != 0:
            raise ComposeError(f"{name} exited {code}:\n{process.tail()}")
        return code

    def wait_healthy(self, name: str) -> None:
        """Run the healthcheck command until it passes, within start_period + interval * retries."""
        process = self.processes[name]
        check = self.healthcheck(name)
        if check is None:
            return
        interval = duration(check.get("interval"), 30)
        timeout = duration(check.get("timeout"), 30)
        retries = int(check.get("retries", 3))
        start_period = duration(check.get("start_period"), 0)
        test = [str(part) for part in check["test"]]
        if test[0] == "CMD-SHELL":
            argv = ["/bin/sh", "-c", test[1]]
        elif test[0] == "CMD":
            argv = [str(Path(sys.executable).parent / test[1]), *test[2:]]
        else:
            raise ComposeError(f"{name}: healthcheck test {test[0]!r} is not CMD or CMD-SHELL")
        deadline = time.monotonic() + start_period + interval * retries
        last = ""
        while True:
            if process.popen.poll() is not None:
                raise ComposeError(
                    f"{name} exited {process.popen.returncode} before it was healthy:\n"
                    f"{process.tail()}"
                )
            try:
                result = subprocess.run(
                    argv,
                    env=process.env,
                    cwd=process.directory,
                    capture_output=True,
                    text=True,
                    timeout=timeout,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                last = f"the check took longer than its timeout ({timeout:g}s)"  # a failed check
            else:
                if result.returncode == 0:
                    return
                last = (result.stdout + result.stderr).strip()
            if time.monotonic() > deadline:
                raise ComposeError(
                    f"{name} was not healthy within {start_period + interval * retries:.0f}s "
                    f"(healthcheck: {last}):\n{process.tail()}"
                )
            # Docker checks every `interval` (start_interval while starting); a second is
            # quicker and still within the same deadline.
            time.sleep(min(interval, 1.0))  # noqa: sleep-ok - between healthcheck runs

    def up(self) -> None:
        """Every runnable service in order: one-shots run to completion, the rest to healthy."""
        self.create_databases()
        for name in self.runnable():
            if str(self.compose["services"][name].get("restart", "")) == "no":
                self.run_to_completion(name)
            else:
                self.start(name)
        for name in self.processes:
            if name not in self.completed:
                self.wait_healthy(name)

    def down(self) -> None:
        """Stop every service (SIGTERM, as ``docker compose down``), then drop the databases."""
        for process in self.processes.values():
            if process.popen.poll() is None:
                process.popen.terminate()
        for process in self.processes.values():
            try:
                process.popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.popen.kill()
                process.popen.wait()
        self.drop_databases()

    def __enter__(self) -> Self:
        try:
            self.up()
        except BaseException:
            self.down()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.down()
