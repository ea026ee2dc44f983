"""A counting OTLP/gRPC trace receiver in its own process: where the traced variants export.

``python -m choreokit.services.bench._otlp_sink`` prints ``ready grpc=<port> http=<port>``;
``GET /count`` on the HTTP port answers the spans received so far. It decodes every
request (as a collector would) and keeps nothing. SIGTERM stops it.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc  # type: ignore[import-untyped]  # grpcio ships no type hints
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc


@dataclass
class Sink:
    """The running receiver, as the orchestrating process sees it."""

    grpc_port: int
    http_port: int

    @property
    def endpoint(self) -> str:
        """``OTEL_EXPORTER_OTLP_ENDPOINT`` for an exporter sending here."""
        return f"http://127.0.0.1:{self.grpc_port}"

    def count(self) -> int:
        """Spans received so far."""
        url = f"http://127.0.0.1:{self.http_port}/count"
        with urllib.request.urlopen(url, timeout=5) as answer:
            return int(answer.read())


@contextlib.contextmanager
def running_sink() -> Iterator[Sink]:
    """Start the receiver process; stop it on the way out."""
    process = subprocess.Popen(
        [sys.executable, "-m", "choreokit.services.bench._otlp_sink"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().split()
        if not line or line[0] != "ready":
            raise RuntimeError("the OTLP sink did not start")
        ports = dict(part.split("=") for part in line[1:])
        yield Sink(int(ports["grpc"]), int(ports["http"]))
    finally:
        process.terminate()
        process.wait(timeout=10)


class _Counter:
    def __init__(self) -> None:
        self.spans = 0
        self.lock = threading.Lock()

    def take(self, request: trace_service_pb2.ExportTraceServiceRequest) -> None:
        count = sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
        with self.lock:
            self.spans += count


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, counter: _Counter) -> None:
        self._counter = counter

    def Export(  # noqa: N802 - the generated service's method name
        self, request: trace_service_pb2.ExportTraceServiceRequest, _context: Any
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        self._counter.take(request)
        return trace_service_pb2.ExportTraceServiceResponse()


def _handler(counter: _Counter) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            body = str(counter.spans).encode() if self.path == "/count" else b""
            self.send_response(200 if self.path == "/count" else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base signature
            """Quiet."""

    return Handler


def main() -> None:
    """Serve until SIGTERM."""
    counter = _Counter()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_TraceService(counter), server)  # type: ignore[no-untyped-call]
    grpc_port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    http = ThreadingHTTPServer(("127.0.0.1", 0), _handler(counter))
    http.daemon_threads = True
    threading.Thread(target=http.serve_forever, daemon=True).start()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(f"ready grpc={grpc_port} http={http.server_address[1]}", flush=True)
    stop.wait()
    http.shutdown()
    server.stop(grace=1).wait()


if __name__ == "__main__":
    main()
