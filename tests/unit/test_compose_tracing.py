"""docker-compose.yml runs Jaeger with OTLP open and points every choreokit service at it; its
Jaeger is the release and config the test rig builds and runs (tests/rig/jaeger.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.rig import jaeger as rig

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"


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


def test_compose_runs_the_jaeger_release_the_rig_builds_and_tests() -> None:
    jaeger = compose()["services"]["jaeger"]
    assert jaeger["image"] == f"jaegertracing/jaeger:{rig.RELEASE}", (
        f"the rig builds {rig.MODULE}@{rig.MODULE_VERSION} (Jaeger v{rig.RELEASE}): "
        "change the image tag and tests/rig/jaeger.py together"
    )
    assert rig.MODULE_VERSION.startswith("v1.")  # the module's tags are v1.x for v2 releases
    assert rig.RELEASE.startswith("2.")


def test_compose_runs_jaeger_with_the_rigs_config_and_ports() -> None:
    jaeger = compose()["services"]["jaeger"]
    mounts = {v.split(":")[1]: ROOT / v.split(":")[0] for v in jaeger["volumes"]}
    command = jaeger["command"]
    config = command[command.index("--config") + 1]
    assert mounts[config].resolve() == rig.CONFIG.resolve()
    assert jaeger["environment"]["JAEGER_LISTEN_HOST"] == "0.0.0.0"

    text = rig.CONFIG.read_text()
    loaded = yaml.safe_load(text)
    assert loaded["service"]["pipelines"]["traces"]["receivers"] == ["otlp"]
    assert set(loaded["receivers"]["otlp"]["protocols"]) == {"grpc", "http"}
    backends = loaded["extensions"]["jaeger_storage"]["backends"]
    assert all("memory" in b for b in backends.values())
    # The defaults the compose file runs with are the ports it publishes, one to one.
    defaults = {
        "JAEGER_OTLP_GRPC_PORT": "4317",
        "JAEGER_OTLP_HTTP_PORT": "4318",
        "JAEGER_QUERY_HTTP_PORT": "16686",
    }
    for variable, port in defaults.items():
        assert f"${{env:{variable}:-{port}}}" in text, variable
        assert f"{port}:{port}" in {str(p) for p in jaeger["ports"]}, port
