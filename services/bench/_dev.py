"""``choreo dev --example`` on the bench's broker, for the scenarios that measure the system."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

from choreokit.services.bench._context import Context

READY_TIMEOUT_S = 180


@contextlib.contextmanager
def running_dev(
    ctx: Context, name: str
) -> Iterator[tuple[subprocess.Popen[bytes], dict[str, str]]]:
    """Start ``choreo dev``, wait until it is ready, yield it and its URLs.

    Its data and log go under ``ctx.workdir`` as ``name``; on the way out it is
    stopped (SIGINT, then SIGKILL after 60 s).
    """
    from choreokit.services.runtime import free_port
    from choreokit.services.runtime.supervisor import read_state

    data = ctx.workdir / name
    env = ctx.child_env(
        CHOREO_ORDERS_PORT=str(free_port()),
        CHOREO_OBSERVER_PORT=str(free_port()),
        CHOREO_GATEWAY_PORT=str(free_port()),
    )
    command = [sys.executable, "-m", "choreokit.services.cli", "dev", "--example"]
    command += ["--bootstrap", ctx.bootstrap, "--data-dir", str(data)]
    log = ctx.workdir / f"{name}.log"
    with log.open("wb") as out:
        dev = subprocess.Popen(command, env=env, stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not ((state := read_state(data)) and state.get("ready")):
            if dev.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(encoding="utf-8", errors="replace")[-2000:]
                raise RuntimeError(f"choreo dev did not become ready: {tail}")
            time.sleep(0.2)
        found: Any = state.get("urls") or {}
        yield dev, {str(k): str(v) for k, v in dict(found).items()}
    finally:
        dev.send_signal(signal.SIGINT)
        try:
            dev.wait(timeout=60)
        except subprocess.TimeoutExpired:
            dev.kill()
            dev.wait()
