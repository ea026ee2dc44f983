"""The OTLP receiver process for integration tests, and reading what it received."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Receiver:
    """A running ``tests.otlp_receiver`` process and the file its spans go to."""

    grpc_port: int
    http_port: int
    out: Path

    @property
    def grpc_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.grpc_port}"

    @property
    def http_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def spans(self) -> list[dict[str, Any]]:
        """Every span received so far (complete lines only)."""
        if not self.out.exists():
            return []
        text = self.out.read_text(encoding="utf-8")
        return [json.loads(line) for line in text.splitlines() if line.endswith("}")]


@contextmanager
def otlp_receiver(directory: Path) -> Iterator[Receiver]:
    """Start the receiver in its own process; stop it on exit."""
    out = directory / "spans.jsonl"
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.otlp_receiver", "--out", str(out)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        ready = process.stdout.readline().split()
        assert ready[:1] == ["ready"], f"receiver did not start: {ready}"
        ports = dict(part.split("=") for part in ready[1:])
        yield Receiver(int(ports["grpc"]), int(ports["http"]), out)
    finally:
        process.terminate()
        process.wait(timeout=10)
