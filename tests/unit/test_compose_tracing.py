"""docker-compose.yml runs Jaeger with OTLP open and points every choreokit service at it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"


def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_jaeger_exposes_otlp_grpc_http_and_the_ui() -> None:
    jaeger = compose()["services"]["jaeger"]
    assert jaeger["image"].startswith("jaegertracing/jaeger:2.")  # v2: OTLP built in
    published = {str(p).split(":")[-1] for p in jaeger["ports"]}
    assert {"4317", "4318", "16686"} <= published


def test_every_choreokit_service_exports_to_jaeger() -> None:
    document = compose()
    assert document["x-tracing"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4317"
    for name, service in document["services"].items():
        command = service.get("command") or ""
        runs_choreo = "choreo" in (command if isinstance(command, str) else " ".join(command))
        if runs_choreo:
            env = service.get("environment") or {}
            assert env.get("OTEL_EXPORTER_OTLP_ENDPOINT") == "http://jaeger:4317", name
