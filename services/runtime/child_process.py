"""A broker's child process: started to die with its parent, logged to a file, stopped politely.

The embedded broker and each Apache Kafka node of the rig run this way: the kernel kills
the child when its parent dies (no broker outlives a crashed test run), its output goes
to a log file that is closed when it ends, and stopping it wakes a paused one, asks with
SIGTERM and kills it when it has not exited in time.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor
from datetime import timedelta
from pathlib import Path
from typing import IO

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """In a child before exec: have the kernel SIGKILL it when its parent dies."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class ChildProcess:
    """One child process and its log file.

    Args:
        log: The file its output (stdout and stderr) is appended to; ``None`` discards it.
    """

    def __init__(self, log: Path | None = None) -> None:
        self.log_path = log
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The process id, from :meth:`start` until :meth:`stop`, :meth:`kill` or :meth:`exited`.

        Also while it is paused, or after it exited unnoticed.
        """
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        """Whether the process is alive (paused counts as alive)."""
        return self._process is not None and self._process.poll() is None

    def start(
        self,
        command: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: Path | None = None,
        launcher: Executor | None = None,
    ) -> None:
        """Start ``command``, SIGKILLed by the kernel when the thread that starts it ends.

        The parent-death signal follows the *thread* that forked: a child started from a
        passing thread (``asyncio.to_thread``) dies when that thread ends. ``launcher``
        (one long-lived thread) starts it instead.
        """
        self._log = self.log_path.open("ab") if self.log_path is not None else None
        log = self._log

        def popen() -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                list(command),
                stdin=subprocess.DEVNULL,
                stdout=log or subprocess.DEVNULL,
                stderr=subprocess.STDOUT if log else subprocess.DEVNULL,
                env=dict(env),
                cwd=cwd,
                preexec_fn=die_with_parent,  # noqa: PLW1509 - only prctl, no locks taken
            )

        self._process = launcher.submit(popen).result() if launcher is not None else popen()

    def exited(self) -> int | None:
        """The exit code if the process has ended (then it is forgotten and its log closed)."""
        if self._process is None or self._process.poll() is None:
            return None
        code = self._process.returncode
        self._forget()
        return code

    def stop(self, timeout: timedelta) -> None:
        """SIGTERM (after SIGCONT: a paused process cannot act on it); SIGKILL after ``timeout``."""
        process = self._process
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGCONT)
            process.terminate()
            try:
                process.wait(timeout.total_seconds())
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._forget()

    def kill(self) -> None:
        """SIGKILL, as a crash or a pulled plug would: no clean shutdown."""
        process = self._process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()
        self._forget()

    def send(self, signum: signal.Signals) -> None:
        """Send ``signum`` (SIGSTOP to pause, SIGCONT to resume); the process must be started."""
        assert self._process is not None, "start the process first"
        os.kill(self._process.pid, signum)

    def wait(self) -> int:
        """Block until the process exits; return its exit code. The process must be started."""
        assert self._process is not None, "start the process first"
        return self._process.wait()

    def log_tail(self, lines: int = 25) -> str:
        """The last ``lines`` lines of the log."""
        if self.log_path is None:
            return "(no log kept)"
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log yet)"
        return "\n".join(text.splitlines()[-lines:])

    def _forget(self) -> None:
        self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None
