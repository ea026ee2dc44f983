"""Tracing set-up from the OTEL_* environment, and log lines that name trace, span and flow."""

from __future__ import annotations

import io
import json
import logging
import os
from datetime import UTC, datetime

import pytest
from opentelemetry import context as otel_context
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import format_span_id, format_trace_id, set_span_in_context

from choreokit import tracing
from choreokit.events import ConfigurationError, Envelope
from choreokit.tracing import (
    JsonFormatter,
    LogFormat,
    TraceContextFilter,
    TraceContextRelay,
    TracingMiddleware,
    TracingSettings,
    configure,
    configure_logging,
    flow_label,
)
from choreokit.tracing._context import handling
from choreokit.tracing._setup import _exporter


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith(("OTEL_", "CHOREO_LOG_")):
            monkeypatch.delenv(key)


def test_tracing_exports() -> None:
    assert sorted(tracing.__all__) == sorted(
        [
            "EventMetrics",
            "JsonFormatter",
            "KafkaHeaderGetter",
            "KafkaHeaderSetter",
            "LogFormat",
            "Metrics",
            "OtlpProtocol",
            "Telemetry",
            "TraceContextFilter",
            "TraceContextRelay",
            "TracesExporter",
            "TracingMiddleware",
            "TracingSettings",
            "configure",
            "configure_logging",
            "format_traceparent",
            "parse_traceparent",
            "configure_metrics",
            "flow_label",
        ]
    )
    for name in tracing.__all__:
        assert getattr(tracing, name).__doc__, f"tracing.{name} has no docstring"


def test_without_an_endpoint_tracing_is_off_and_only_relays_context() -> None:
    telemetry = configure("inventory", set_global=False)
    assert not telemetry.enabled
    assert [type(m) for m in telemetry.middlewares] == [TraceContextRelay]
    telemetry.shutdown()  # nothing to flush, and no error


def test_sdk_disabled_wins_over_an_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    telemetry = configure("inventory", set_global=False)
    assert not telemetry.enabled
    assert [type(m) for m in telemetry.middlewares] == [TraceContextRelay]


def test_traces_exporter_none_turns_tracing_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert not configure("inventory", set_global=False).enabled


def test_an_endpoint_turns_tracing_on_with_grpc_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
    telemetry = configure("inventory", set_global=False)
    try:
        assert telemetry.enabled
        assert [type(m) for m in telemetry.middlewares] == [TracingMiddleware]
        assert isinstance(telemetry.tracer_provider, TracerProvider)
        assert telemetry.tracer_provider.resource.attributes["service.name"] == "inventory"
        assert isinstance(_exporter(TracingSettings()), GrpcExporter)
    finally:
        telemetry.shutdown()


def test_http_protobuf_posts_to_the_traces_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://jaeger:4318/")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    settings = TracingSettings()
    assert settings.http_traces_url == "http://jaeger:4318/v1/traces"
    exporter = _exporter(settings)
    assert isinstance(exporter, HttpExporter)
    assert exporter._endpoint == "http://jaeger:4318/v1/traces"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://other:9999/custom")
    assert TracingSettings().http_traces_url == "http://other:9999/custom"


def test_the_traces_protocol_wins_over_the_general_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc")
    assert TracingSettings().otlp_protocol == "grpc"


def test_service_name_and_resource_attributes_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=staging")
    telemetry = configure("inventory", set_global=False)
    assert telemetry.tracer_provider is not None
    attributes = telemetry.tracer_provider.resource.attributes
    assert attributes["service.name"] == "inventory"
    assert attributes["deployment.environment.name"] == "staging"
    telemetry.shutdown()
    monkeypatch.setenv("OTEL_SERVICE_NAME", "inventory-eu")
    renamed = configure("inventory", set_global=False)
    assert renamed.tracer_provider is not None
    assert renamed.tracer_provider.resource.attributes["service.name"] == "inventory-eu"
    renamed.shutdown()


def test_the_sampler_comes_from_the_standard_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.1")
    telemetry = configure("inventory", set_global=False)
    assert telemetry.tracer_provider is not None
    description = telemetry.tracer_provider.sampler.get_description()
    assert description.startswith("ParentBased{root:TraceIdRatioBased{0.1}")
    telemetry.shutdown()


def test_an_invalid_protocol_says_which_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
    with pytest.raises(ConfigurationError, match="OTEL_EXPORTER_OTLP_PROTOCOL"):
        configure("inventory", set_global=False)


# -- logs ----------------------------------------------------------------------------------


def _envelope(traceparent: str | None) -> Envelope:
    return Envelope(
        id="e-1",
        source="/t",
        type="order.placed",
        dataversion=1,
        time=datetime(2026, 1, 1, tzinfo=UTC),
        correlation_id="flow-42",
        traceparent=traceparent,
    )


def _logger(formatter: logging.Formatter) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(TraceContextFilter())
    handler.setFormatter(formatter)
    log = logging.getLogger(f"test.tracing.{id(stream)}")
    log.propagate = False
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    return log, stream


def test_json_lines_carry_the_current_spans_ids_and_the_flow() -> None:
    log, stream = _logger(JsonFormatter("inventory"))
    span = TracerProvider().get_tracer("t").start_span("process orders")
    token = otel_context.attach(set_span_in_context(span))
    flow = handling.set(_envelope(None))
    try:
        log.info("reserved %d items", 3, extra={"sku": "SKU-1"})
    finally:
        handling.reset(flow)
        otel_context.detach(token)
    line = json.loads(stream.getvalue())
    ctx = span.get_span_context()
    assert line["message"] == "reserved 3 items"
    assert line["level"] == "INFO"
    assert line["service"] == "inventory"
    assert line["trace_id"] == format_trace_id(ctx.trace_id)
    assert line["span_id"] == format_span_id(ctx.span_id)
    assert line["correlation_id"] == flow_label("flow-42")
    assert line["sku"] == "SKU-1"


def test_with_tracing_off_lines_carry_the_relayed_trace_context() -> None:
    log, stream = _logger(JsonFormatter())
    flow = handling.set(_envelope("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"))
    try:
        log.warning("slow")
    finally:
        handling.reset(flow)
    line = json.loads(stream.getvalue())
    assert line["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert line["span_id"] == "b7ad6b7169203331"
    assert line["correlation_id"] == flow_label("flow-42")


def test_lines_outside_any_flow_have_null_ids_and_an_explicit_correlation_id_wins() -> None:
    log, stream = _logger(JsonFormatter())
    log.info("starting")
    flow = handling.set(_envelope(None))
    try:
        log.info("retrying", extra={"correlation_id": "flow-explicit"})
    finally:
        handling.reset(flow)
    first, second = (json.loads(x) for x in stream.getvalue().splitlines())
    assert (first["trace_id"], first["span_id"], first["correlation_id"]) == (None, None, None)
    assert second["correlation_id"] == flow_label("flow-explicit")


def test_text_lines_append_the_ids_they_know() -> None:
    from choreokit.tracing._logs import TextFormatter

    log, stream = _logger(TextFormatter())
    flow = handling.set(_envelope(None))
    try:
        log.info("handled")
    finally:
        handling.reset(flow)
    assert stream.getvalue().rstrip().endswith(f"handled correlation_id={flow_label('flow-42')}")


def test_configure_logging_reads_choreo_log_format(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHOREO_LOG_FORMAT", "json")
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    try:
        handler = configure_logging("orders", level=logging.INFO, stream=stream)
        assert isinstance(handler.formatter, JsonFormatter)
        logging.getLogger("choreokit.test").info("hello")
        assert json.loads(stream.getvalue().splitlines()[-1])["service"] == "orders"
        text = configure_logging("orders", log_format=LogFormat.TEXT, stream=stream)
        assert not isinstance(text.formatter, JsonFormatter)
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])


def test_an_invalid_log_format_says_what_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHOREO_LOG_FORMAT", "xml")
    with pytest.raises(ConfigurationError, match="CHOREO_LOG_FORMAT"):
        configure_logging("orders", stream=io.StringIO())


def test_choreo_run_sets_up_log_lines_before_anything_else(monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from choreokit.services.cli import cli

    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    monkeypatch.setenv("CHOREO_LOG_FORMAT", "xml")
    try:
        result = CliRunner().invoke(cli, ["run", "no-such-service"])
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
    assert result.exit_code == 2
    assert "CHOREO_LOG_FORMAT must be one of: text, json" in result.output
