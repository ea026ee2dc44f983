"""A real OTLP trace receiver, run as its own process: gRPC and HTTP/protobuf.

``python -m tests.otlp_receiver --out spans.jsonl`` listens on two free ports,
prints ``ready grpc=<port> http=<port>`` on stdout, and appends one JSON line
per received span to ``--out`` (ids as lowercase hex, attributes as plain
values, the resource's ``service.name`` and the protocol it came by). With
``--count-only`` it keeps nothing and only counts spans (the benchmark's sink).
``GET /count`` on the HTTP port answers the number of spans received so far.
SIGTERM or SIGINT stops it.

It stands in for Jaeger's OTLP receiver in tests: the bytes it decodes are the
ones the exporters would send to Jaeger (``opentelemetry-proto`` messages).
"""

from __future__ import annotations

import argparse
import gzip
import json
import signal
import sys
import threading
import zlib
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc  # type: ignore[import-untyped]  # grpcio ships no type hints
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

_KINDS = {0: "UNSPECIFIED", 1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}


def value_of(value: AnyValue) -> Any:
    """An OTLP attribute value as a plain Python value."""
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [value_of(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return attributes_of(value.kvlist_value.values)
    if which == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, which)


def attributes_of(pairs: Any) -> dict[str, Any]:
    """OTLP key-values as a dict."""
    return {kv.key: value_of(kv.value) for kv in pairs if isinstance(kv, KeyValue)}


class Sink:
    """Where received spans go: a JSON-lines file, or a counter."""

    def __init__(self, out: Path | None) -> None:
        self._out = out.open("a", encoding="utf-8") if out is not None else None
        self._lock = threading.Lock()
        self.spans = 0

    def take(self, request: trace_service_pb2.ExportTraceServiceRequest, protocol: str) -> None:
        lines = []
        count = 0
        for resource_spans in request.resource_spans:
            resource = attributes_of(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    count += 1
                    if self._out is None:
                        continue
                    lines.append(
                        json.dumps(
                            {
                                "protocol": protocol,
                                "service_name": resource.get("service.name"),
                                "resource": resource,
                                "scope": scope_spans.scope.name,
                                "schema_url": scope_spans.schema_url,
                                "trace_id": span.trace_id.hex(),
                                "span_id": span.span_id.hex(),
                                "parent_span_id": span.parent_span_id.hex() or None,
                                "name": span.name,
                                "kind": _KINDS.get(span.kind, str(span.kind)),
                                "start_ns": span.start_time_unix_nano,
                                "end_ns": span.end_time_unix_nano,
                                "attributes": attributes_of(span.attributes),
                                "events": [
                                    {"name": e.name, "attributes": attributes_of(e.attributes)}
                                    for e in span.events
                                ],
                                "links": [
                                    {"trace_id": link.trace_id.hex(), "span_id": link.span_id.hex()}
                                    for link in span.links
                                ],
                                "status": {
                                    "code": span.status.code,
                                    "message": span.status.message,
                                },
                            }
                        )
                    )
        with self._lock:
            self.spans += count
            if self._out is not None and lines:
                self._out.write("\n".join(lines) + "\n")
                self._out.flush()


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, sink: Sink) -> None:
        self._sink = sink

    def Export(  # noqa: N802 - the generated service's method name
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        self._sink.take(request, "grpc")
        return trace_service_pb2.ExportTraceServiceResponse()


def _http_handler(sink: Sink, count_only: bool) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            encoding = (self.headers.get("Content-Encoding") or "").lower()
            if encoding == "gzip":
                body = gzip.decompress(body)
            elif encoding == "deflate":
                body = zlib.decompress(body)
            if self.path != "/v1/traces":
                self._answer(404, b"")
                return
            request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
            if count_only:
                sink.spans += sum(
                    len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans
                )
            else:
                sink.take(request, "http/protobuf")
            self._answer(200, trace_service_pb2.ExportTraceServiceResponse().SerializeToString())

        def do_GET(self) -> None:
            if self.path != "/count":
                self._answer(404, b"")
                return
            self._answer(200, str(sink.spans).encode())

        def _answer(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base signature
            """Quiet: one line per export would drown the test output."""

    return Handler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, help="append received spans here (JSON lines)")
    parser.add_argument("--count-only", action="store_true", help="only count spans")
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    sink = Sink(None if args.count_only else args.out)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_TraceService(sink), server)  # type: ignore[no-untyped-call]
    grpc_port = server.add_insecure_port(f"{args.host}:0")
    server.start()
    http = ThreadingHTTPServer((args.host, 0), _http_handler(sink, args.count_only))
    http.daemon_threads = True
    threading.Thread(target=http.serve_forever, daemon=True).start()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(f"ready grpc={grpc_port} http={http.server_address[1]}", flush=True)
    stop.wait()
    http.shutdown()
    server.stop(grace=1).wait()
    print(f"spans={sink.spans}", flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
