"""The Java and Go producers of tests/interop, built once and cached by a hash of their sources.

Builds land under ``~/.cache/choreokit/interop/`` (``$XDG_CACHE_HOME`` if set), in a folder
named by the hash of the project's files and the toolchain's version, so a second run (or a
second checkout with the same sources) reuses them. Maven's ``~/.m2`` and Go's module and
build caches make a changed source cheap to rebuild too.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
INTEROP = ROOT / "tests" / "interop"
JAVA_PROJECT = INTEROP / "java"
GO_PROJECT = INTEROP / "go"
JAVA_SOURCES = ("pom.xml", "src/main/java/com/example/acme/PlaceOrder.java")
GO_SOURCES = ("go.mod", "go.sum", "main.go")
BUILD_TIMEOUT = 900.0
"""Seconds a first build may take (Maven and Go fetch their dependencies then)."""


class BuildError(RuntimeError):
    """A producer could not be built; the message says what to install or read."""


@dataclass(frozen=True)
class Built:
    """A producer ready to run: its command line, and whether this call built it."""

    command: tuple[str, ...]
    fresh: bool
    seconds: float


def cache_root() -> Path:
    """Where built producers are kept."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "choreokit" / "interop"


def _need(*tools: str, install: str) -> None:
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        raise BuildError(f"{' and '.join(missing)} not found on PATH: {install}")


def _tool_version(command: Sequence[str]) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    return (done.stdout + done.stderr).strip()


def _digest(project: Path, sources: Sequence[str], toolchain: str) -> str:
    digest = hashlib.sha256(toolchain.encode())
    for relative in sources:
        digest.update(f"\0{relative}\0".encode())
        digest.update((project / relative).read_bytes())
    return digest.hexdigest()[:16]


def _run(command: Sequence[str], *, cwd: Path, env: dict[str, str], what: str) -> None:
    try:
        done = subprocess.run(
            command,
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise BuildError(f"{what} took over {BUILD_TIMEOUT:.0f}s: {' '.join(command)}") from exc
    if done.returncode != 0:
        raise BuildError(
            f"{what} failed ({' '.join(command)} in {cwd}, exit {done.returncode}):\n"
            f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
        )


def _cached(
    name: str, digest: str, artifact: str, build: Callable[[Path], None]
) -> tuple[Path, bool]:
    """The cached ``artifact`` of build ``name-digest``; ``build(folder)`` makes it if absent."""
    target = cache_root() / f"{name}-{digest}"
    if (target / artifact).is_file():
        return target / artifact, False
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-{digest}.", dir=target.parent))
    try:
        build(staging)
        if not (staging / artifact).is_file():
            raise BuildError(f"the {name} build made no {artifact}")
        try:
            staging.rename(target)  # atomic; another session may have won the race
        except OSError:
            if not (target / artifact).is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target / artifact, True


def java_producer() -> Built:
    """Build tests/interop/java with Maven (one jar with its dependencies), or reuse it."""
    _need(
        "java",
        "mvn",
        install="the Java producer needs Java 17+ and Maven "
        "(Debian: apt-get install openjdk-17-jdk-headless maven)",
    )
    started = time.monotonic()
    toolchain = _tool_version(["java", "-version"])
    digest = _digest(JAVA_PROJECT, JAVA_SOURCES, toolchain)

    def build(out: Path) -> None:
        # Build in a scratch copy, so that the checkout gets no target/ folder.
        with tempfile.TemporaryDirectory(prefix="choreokit-java-") as scratch:
            work = Path(scratch)
            for relative in JAVA_SOURCES:
                (work / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(JAVA_PROJECT / relative, work / relative)
            _run(
                ["mvn", "--batch-mode", "--quiet", "-Dmaven.test.skip=true", "package"],
                cwd=work,
                env=dict(os.environ),
                what="the Java producer's Maven build",
            )
            shutil.copyfile(work / "target" / "acme-orders.jar", out / "acme-orders.jar")

    jar, fresh = _cached("java", digest, "acme-orders.jar", build)
    command = ("java", "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn", "-jar", str(jar))
    return Built(command, fresh, time.monotonic() - started)


def go_producer() -> Built:
    """Build tests/interop/go with the module cache (pinned by go.sum), or reuse the binary."""
    _need("go", install="the Go producer needs Go 1.26+ (https://go.dev/doc/install)")
    started = time.monotonic()
    toolchain = _tool_version(["go", "env", "GOVERSION", "GOOS", "GOARCH"])
    digest = _digest(GO_PROJECT, GO_SOURCES, toolchain)

    def build(out: Path) -> None:
        _run(
            ["go", "build", "-trimpath", "-o", str(out / "place-order"), "."],
            cwd=GO_PROJECT,
            # go.sum pins every module; the toolchain is the one installed, never a download.
            env={**os.environ, "GOFLAGS": "-mod=readonly", "GOTOOLCHAIN": "local"},
            what="the Go producer's build",
        )

    binary, fresh = _cached("go", digest, "place-order", build)
    return Built((str(binary),), fresh, time.monotonic() - started)
