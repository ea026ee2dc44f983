"""Jaeger v2 for the test rig: built from its Go module (pinned, cached), run on loopback.

The binary is ``cmd/jaeger`` of the Go module ``github.com/jaegertracing/jaeger``,
whose module versions carry the v1.x tags: module ``v1.76.0`` is Jaeger
**v2.13.0** (the module's CHANGELOG heads that release "v1.76.0 / v2.13.0", and
the build stamps it, so ``jaeger version`` says ``v2.13.0``). ``docker-compose.yml``
runs the image of the same release with the same config (``deploy/jaeger/config.yaml``);
``tests/unit/test_compose_tracing.py`` keeps the two equal.

``go install github.com/jaegertracing/jaeger/cmd/jaeger@v1.76.0`` refuses this
module (its go.mod has a ``replace`` directive, which ``go install pkg@version``
does not allow), so the build does what that command would, in two steps: ``go mod
download`` the module (checked against the checksum database as usual), then
``go install ./cmd/jaeger`` inside it, where its own go.mod, go.sum and replace
apply, as in Jaeger's own release build. ``GOBIN`` is the cache below, so a second
run finds the binary and costs nothing; Go's module and build caches make a
rebuild of a lost binary quick.

A ``go install`` build embeds **no UI assets** (Jaeger's release build adds the
separately built jaeger-ui): its query server answers the API in full and serves
a placeholder page, naming the version, where the UI would be.

``python -m tests.rig.jaeger`` builds (if needed) and prints the binary's path;
``scripts/test`` runs it before pytest.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx

MODULE = "github.com/jaegertracing/jaeger"
"""The Go module whose ``cmd/jaeger`` is Jaeger v2."""
MODULE_VERSION = "v1.76.0"
"""The module version the rig builds (module versions carry Jaeger's v1.x tags)."""
RELEASE = "2.13.0"
"""The Jaeger v2 release of :data:`MODULE_VERSION`: the image tag in docker-compose.yml."""
PACKAGE = "./cmd/jaeger"
VERSION_FLAG = f"{MODULE}/internal/version.latestVersion"
"""Where Jaeger's release build stamps the version (``jaeger version`` prints it)."""
UI_PLACEHOLDER = "This is a placeholder for the Jaeger UI home page"
"""What a build without UI assets serves where the UI would be."""

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "deploy" / "jaeger" / "config.yaml"
"""The Jaeger config the rig and docker-compose.yml both run."""
_CACHE_HOME = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
CACHE = _CACHE_HOME / "choreokit" / f"jaeger-{MODULE_VERSION}"
BINARY = CACHE / "bin" / "jaeger"
"""The cached binary; delete it (or the folder) to force a rebuild."""


class JaegerBuildError(RuntimeError):
    """The Jaeger binary could not be built."""


def _go() -> str:
    go = shutil.which("go") or next(
        (str(p) for p in (Path("/usr/local/go/bin/go"),) if p.exists()), None
    )
    if go is None:
        raise JaegerBuildError(
            f"Go is needed to build Jaeger v{RELEASE} ({MODULE}/cmd/jaeger@{MODULE_VERSION}) "
            "for the tracing tests: install Go 1.24 or newer and put 'go' on PATH, "
            f"or place a Jaeger v{RELEASE} binary at {BINARY}"
        )
    return go


def _run(args: list[str], *, cwd: Path, env: Mapping[str, str], what: str) -> str:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise JaegerBuildError(
            f"{what} failed (exit {result.returncode}): {' '.join(args)}\n"
            f"{result.stderr[-4000:]}\n"
            "The Go module proxy must be reachable (GOPROXY); see docs/tracing.md"
        )
    return result.stdout


def build(*, quiet: bool = True) -> Path:
    """The Jaeger binary, built with ``go install`` into :data:`CACHE` unless already there.

    Safe to call from several processes at once (one builds, the others wait).

    Raises:
        JaegerBuildError: Go is missing, or the download or the build failed.
    """
    if os.access(BINARY, os.X_OK):
        return BINARY
    go = _go()
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.access(BINARY, os.X_OK):  # another process built it while we waited
            return BINARY
        env = {**os.environ, "GO111MODULE": "on", "GOWORK": "off"}
        if not quiet:
            print(f"building Jaeger v{RELEASE} with go install (once) ...", file=sys.stderr)
        downloaded = _run(
            [go, "mod", "download", "-json", f"{MODULE}@{MODULE_VERSION}"],
            cwd=CACHE,
            env=env,
            what=f"downloading {MODULE}@{MODULE_VERSION}",
        )
        source = Path(json.loads(downloaded)["Dir"])
        changelog = (source / "CHANGELOG.md").read_text(encoding="utf-8")
        if f"{MODULE_VERSION} / v{RELEASE}" not in changelog:
            raise JaegerBuildError(
                f"{MODULE}@{MODULE_VERSION} is not Jaeger v{RELEASE} by its CHANGELOG.md: "
                "fix MODULE_VERSION and RELEASE in tests/rig/jaeger.py together"
            )
        _run(
            [
                go,
                "install",
                "-trimpath",
                "-buildvcs=false",
                f"-ldflags=-X {VERSION_FLAG}=v{RELEASE}",
                PACKAGE,
            ],
            cwd=source,
            env={**env, "GOBIN": str(BINARY.parent), "CGO_ENABLED": "0"},
            what=f"go install {PACKAGE} in {MODULE}@{MODULE_VERSION}",
        )
    if not os.access(BINARY, os.X_OK):
        raise JaegerBuildError(f"go install succeeded but left no binary at {BINARY}")
    return BINARY


def version(binary: Path = BINARY) -> str:
    """The release the binary says it is (``jaeger version``'s ``gitVersion``)."""
    out = subprocess.run(
        [str(binary), "version"], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    start = out.index("{")
    info: dict[str, Any] = json.loads(out[start : out.index("}", start) + 1])
    return str(info["gitVersion"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


class Jaeger:
    """One Jaeger v2 process: OTLP receivers and the query API on free loopback ports.

    Storage is in memory: every start is empty.

    Args:
        log: Where its output goes.
        binary: The Jaeger binary (default: :func:`build`'s).
    """

    def __init__(self, log: Path, binary: Path | None = None) -> None:
        self.log = log
        self.binary = binary or BINARY
        self.otlp_grpc_port = _free_port()
        self.otlp_http_port = _free_port()
        self.query_port = _free_port()
        self.query_grpc_port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL of the query API and UI (what ``CHOREO_JAEGER_URL`` names)."""
        return f"http://127.0.0.1:{self.query_port}"

    @property
    def otlp_endpoint(self) -> str:
        """The OTLP/gRPC endpoint (``OTEL_EXPORTER_OTLP_ENDPOINT``)."""
        return f"http://127.0.0.1:{self.otlp_grpc_port}"

    @property
    def otlp_http_endpoint(self) -> str:
        """The OTLP/HTTP endpoint (with ``OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf``)."""
        return f"http://127.0.0.1:{self.otlp_http_port}"

    def exporting_env(self) -> dict[str, str]:
        """The ``OTEL_*`` variables that make a choreokit service export here, promptly."""
        return {
            "OTEL_EXPORTER_OTLP_ENDPOINT": self.otlp_endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_TRACES_SAMPLER": "parentbased_always_on",
            "OTEL_BSP_SCHEDULE_DELAY": "200",
        }

    def start(self, *, timeout: float = 60.0) -> Self:
        """Start it and wait until the query API answers and the OTLP ports listen."""
        env = {
            **os.environ,
            "JAEGER_LISTEN_HOST": "127.0.0.1",
            "JAEGER_OTLP_GRPC_PORT": str(self.otlp_grpc_port),
            "JAEGER_OTLP_HTTP_PORT": str(self.otlp_http_port),
            "JAEGER_QUERY_HTTP_PORT": str(self.query_port),
            "JAEGER_QUERY_GRPC_PORT": str(self.query_grpc_port),
        }
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [str(self.binary), "--config", str(CONFIG)],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"Jaeger exited with {self.process.returncode} at start:\n{self.tail()}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"Jaeger was not ready after {timeout}s:\n{self.tail()}")
            time.sleep(0.05)  # noqa: sleep-ok - polls a starting subprocess between checks
        return self

    def ready(self) -> bool:
        """Whether the query API answers and both OTLP receivers accept connections."""
        try:
            answered = httpx.get(f"{self.url}/api/services", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False
        return answered and _listening(self.otlp_grpc_port) and _listening(self.otlp_http_port)

    def stop(self) -> int | None:
        """Stop it (SIGTERM, then SIGKILL after 20 s); its exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def tail(self, lines: int = 40) -> str:
        """The last lines of its log."""
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def get(self, path: str, **params: str) -> Any:
        """GET a query API path (``/api/...``) and decode its JSON."""
        response = httpx.get(f"{self.url}{path}", params=params, timeout=10)
        response.raise_for_status()
        return response.json()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@contextlib.contextmanager
def running_jaeger(log: Path) -> Iterator[Jaeger]:
    """Build (if needed) and run one Jaeger for the ``with`` block."""
    build()
    with Jaeger(log) as jaeger:
        yield jaeger


def main() -> int:
    """Build the binary if missing; print its path (``python -m tests.rig.jaeger``)."""
    try:
        binary = build(quiet=False)
    except JaegerBuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(binary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
