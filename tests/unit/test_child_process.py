"""The broker processes' one helper: log file, death with the parent, SIGTERM then SIGKILL.

The embedded broker and every Apache Kafka node of the rig start and stop through
:class:`~choreokit.services.runtime.child_process.ChildProcess`; these pin its promises
with ``sh`` children, so they need neither a broker nor a JVM.
"""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

from choreokit.services.runtime.child_process import ChildProcess
from tests.support import wait_until

ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}


def gone(pid: int) -> bool:
    """Whether ``pid`` names no live process (a zombie of ours counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def state(child: ChildProcess) -> tuple[int | None, bool]:
    """``(pid, running)``, read afresh (a narrowed ``child.pid`` would not be)."""
    return child.pid, child.running


def test_output_goes_to_the_log_and_stop_ends_the_process_and_closes_it(tmp_path: Path) -> None:
    log = tmp_path / "child.log"
    child = ChildProcess(log)
    child.start(["sh", "-c", "echo first; echo second >&2; exec sleep 30"], env=ENV)
    pid = child.pid
    assert pid is not None
    assert child.running
    wait_until(lambda: "second" in log.read_text(), timeout=5, what="the child's output")
    child.stop(timedelta(seconds=5))
    assert gone(pid)
    assert state(child) == (None, False)
    assert child.log_tail(1) == "second"
    assert child.log_tail() == "first\nsecond"


def test_a_child_that_ignores_sigterm_is_killed_after_the_timeout(tmp_path: Path) -> None:
    child = ChildProcess(tmp_path / "stubborn.log")
    child.start(["sh", "-c", "trap '' TERM; echo ready; exec sleep 30"], env=ENV)
    pid = child.pid
    assert pid is not None
    wait_until(lambda: "ready" in (tmp_path / "stubborn.log").read_text(), timeout=5, what="ready")
    started = time.monotonic()
    child.stop(timedelta(milliseconds=300))
    assert gone(pid)
    assert 0.3 <= time.monotonic() - started < 5


def test_a_paused_child_is_woken_so_that_sigterm_stops_it_before_the_timeout() -> None:
    child = ChildProcess()  # no log: its output is discarded
    child.start(["sleep", "30"], env=ENV)
    pid = child.pid
    assert pid is not None
    child.send(signal.SIGSTOP)
    assert child.running  # paused counts as alive
    started = time.monotonic()
    child.stop(timedelta(seconds=20))
    assert time.monotonic() - started < 10  # SIGTERM acted on, not the SIGKILL at 20 s
    assert gone(pid)
    assert child.log_tail() == "(no log kept)"


def test_an_exit_is_seen_once_with_its_code_and_the_log_kept(tmp_path: Path) -> None:
    child = ChildProcess(tmp_path / "crash.log")
    assert child.log_tail() == "(no log yet)"
    child.start(["sh", "-c", "echo boom; exit 3"], env=ENV)
    assert child.wait() == 3
    assert child.pid is not None  # exited, not yet noticed
    assert child.exited() == 3
    assert child.exited() is None
    assert state(child) == (None, False)
    assert child.log_tail() == "boom"


def test_kill_is_sigkill_without_a_clean_shutdown(tmp_path: Path) -> None:
    child = ChildProcess(tmp_path / "killed.log")
    child.start(["sh", "-c", "trap 'echo clean; exit 0' TERM; echo up; sleep 30 & wait"], env=ENV)
    wait_until(lambda: "up" in (tmp_path / "killed.log").read_text(), timeout=5, what="up")
    child.kill()
    assert state(child) == (None, False)
    assert "clean" not in (tmp_path / "killed.log").read_text()


def test_a_child_dies_with_the_thread_that_started_it_unless_a_launcher_starts_it() -> None:
    """The kernel's parent-death signal follows the thread that forked: a child started in a
    passing thread dies with it; one started by a long-lived launcher thread does not."""
    passing = ChildProcess()
    with ThreadPoolExecutor(1) as once:
        once.submit(passing.start, ["sleep", "30"], env=ENV).result()
    wait_until(lambda: not passing.running, timeout=5, what="the orphan to be killed")
    assert passing.exited() == -signal.SIGKILL

    with ThreadPoolExecutor(1) as launcher:
        kept = ChildProcess()
        with ThreadPoolExecutor(1) as once:
            once.submit(kept.start, ["sleep", "30"], env=ENV, launcher=launcher).result()
        assert kept.running
        kept.stop(timedelta(seconds=5))
