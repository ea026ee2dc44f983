"""A test's helper process that reports on stdout, one JSON object a line (the fault suite's
inbox members, the join tests' workers): started from the repository, read as it prints."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[1]


class JsonLinesChild:
    """``python -m module *args`` with its stderr in ``log``; :meth:`drain` hands each line
    printed so far to :meth:`take`."""

    def __init__(self, module: str, args: list[str], log: Path | None) -> None:
        self.log = log
        self._stderr: IO[bytes] | int = log.open("ab") if log else subprocess.DEVNULL
        self.process = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)},
        )
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def take(self, message: dict[str, Any]) -> None:
        """One line the process printed (override)."""

    def drain(self) -> None:
        """Take in every line printed so far."""
        while True:
            try:
                message = self.lines.get_nowait()
            except queue.Empty:
                return
            self.take(message)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(json.loads(line))

    def _close(self) -> None:
        # What the process printed before it ended is still read, up to the pipe's end.
        self._reader.join(timeout=10)
        self.drain()
        if not isinstance(self._stderr, int):
            self._stderr.close()
