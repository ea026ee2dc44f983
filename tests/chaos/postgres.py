"""PostgreSQL servers a fault test may pause: the run's own, or a private one started for it.

A test pauses (SIGSTOP) only a server that this run started: the one scripts/postgres
started for the run (it exports ``CHOREO_TEST_POSTGRES_DATA``, whose ``postmaster.pid``
names the server at ``CHOREO_TEST_POSTGRES_URL``), or one started here, through the
same script, for the test alone. A server the run found already running (a developer's
own, a CI service) is never touched.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "postgres"


class NoPostgresError(Exception):
    """No PostgreSQL server could be started for a test; the message says how to get one."""


@dataclass(frozen=True)
class OwnedPostgres:
    """A PostgreSQL server this run started, which a test may pause and resume."""

    url: str
    """``postgresql://postgres@127.0.0.1:PORT/test``: its ``test`` database."""
    data: Path
    """Its data directory; ``postmaster.pid`` there names the server's pid."""
    private: bool
    """Started for one test (and stopped by :meth:`close`), not the run's shared server."""

    @property
    def pid(self) -> int:
        """The postmaster's pid, from ``postmaster.pid``."""
        return int((self.data / "postmaster.pid").read_text().splitlines()[0])

    def processes(self) -> list[int]:
        """The postmaster and every process it forked (backends, writers, the checkpointer)."""
        postmaster = self.pid
        found = [postmaster]
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue  # gone meanwhile
            if int(stat.rsplit(")", 1)[1].split()[1]) == postmaster:
                found.append(int(entry.name))
        return found

    def pause(self) -> list[int]:
        """SIGSTOP the whole server: the postmaster first (it forks nothing more), then its
        children, whose open connections would go on answering otherwise. Returns the pids."""
        postmaster = self.pid
        os.kill(postmaster, signal.SIGSTOP)
        stopped = self.processes()
        for pid in stopped[1:]:
            os.kill(pid, signal.SIGSTOP)
        return stopped

    def resume(self) -> None:
        """SIGCONT the server and every process it forked (harmless on a running one)."""
        for pid in reversed(self.processes()):
            with contextlib.suppress(ProcessLookupError):  # ended meanwhile
                os.kill(pid, signal.SIGCONT)

    def close(self) -> None:
        """Stop and remove a private server; the run's shared one is left running."""
        self.resume()
        if not self.private:
            return
        bindir = Path((self.data.parent / "bindir").read_text().strip())
        command = [str(bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"]
        if os.getuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, capture_output=True, timeout=60, check=False)
        shutil.rmtree(self.data.parent, ignore_errors=True)


def run_server(url: str | None = None, data: str | None = None) -> OwnedPostgres | None:
    """The server scripts/postgres started for this run, if ``url`` names it; else ``None``.

    ``url`` and ``data`` default to ``$CHOREO_TEST_POSTGRES_URL`` and
    ``$CHOREO_TEST_POSTGRES_DATA``. The server is the run's when that data directory's
    ``postmaster.pid`` names a live server listening on the URL's port on the loopback.
    """
    url = url if url is not None else os.environ.get("CHOREO_TEST_POSTGRES_URL", "")
    data = data if data is not None else os.environ.get("CHOREO_TEST_POSTGRES_DATA", "")
    if not url or not data:
        return None
    parsed = make_url(url)
    try:
        lines = (Path(data) / "postmaster.pid").read_text().splitlines()
        pid, port = int(lines[0]), int(lines[3])
    except (OSError, IndexError, ValueError):
        return None
    if parsed.host not in ("127.0.0.1", "localhost") or parsed.port != port:
        return None
    if not Path(f"/proc/{pid}").exists():
        return None
    return OwnedPostgres(url=url, data=Path(data), private=False)


def start_private() -> OwnedPostgres:
    """A throwaway server for one test, started by scripts/postgres' ``choreo_postgres_start``.

    Raises:
        NoPostgresError: The script could not start one (its output says why).
    """
    shell = (
        f'source "{SCRIPT}" && choreo_postgres_start >&2 && '
        'echo "$CHOREO_TEST_POSTGRES_BIN" > "$(dirname "$CHOREO_TEST_POSTGRES_DATA")/bindir" && '
        'printf "%s\\n%s\\n" "$CHOREO_TEST_POSTGRES_URL" "$CHOREO_TEST_POSTGRES_DATA"'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHOREO_TEST_POSTGRES_")}
    result = subprocess.run(
        ["bash", "-c", shell], capture_output=True, text=True, env=env, timeout=300, check=False
    )
    lines = result.stdout.split()
    if result.returncode != 0 or len(lines) != 2:
        raise NoPostgresError(
            "a private PostgreSQL server for this test did not start through "
            f"scripts/postgres (exit {result.returncode}): {result.stderr[-1500:]}\n"
            "it needs PostgreSQL's binaries (Debian's postgresql package, which the script "
            "installs as root), or run the suite through scripts/test"
        )
    return OwnedPostgres(url=lines[0], data=Path(lines[1]), private=True)
