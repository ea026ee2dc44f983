"""docker-compose.yml and the Dockerfile, checked against the services and their settings.

No Docker engine runs here, so the file is kept correct by reading it: every
service is present and runs itself, every variable it sets is one its settings
read, the images and commands agree, and nothing stops `--scale`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy.engine import make_url

from choreokit.services.runtime import KAFKA_VERSION, pinned_version
from choreokit.services.runtime.app import service_names
from choreokit.services.runtime.discovery import EXAMPLE_ENV
from choreokit.services.runtime.environment import is_read_by, variables_read_by

ROOT = Path(__file__).resolve().parents[2]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
INFRASTRUCTURE = {"kafka", "postgres", "jaeger", "topics"}
SCALABLE = {"orders", "inventory", "payments", "shipping"}
SHARED: dict[str, Any] = COMPOSE["x-environment"]
with pytest.MonkeyPatch.context() as patch:
    # What `choreo run` knows in the containers, whose shared environment turns the example on.
    patch.setenv(EXAMPLE_ENV, str(SHARED.get(EXAMPLE_ENV, "")))
    NAMES = service_names()


@pytest.fixture(autouse=True)
def _as_in_the_containers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(EXAMPLE_ENV, str(SHARED.get(EXAMPLE_ENV, "")))


def test_the_containers_run_the_example_domain() -> None:
    assert set(NAMES) >= SCALABLE, f"{EXAMPLE_ENV} is not 1 in x-environment"


def environment(name: str) -> dict[str, str]:
    env = SERVICES[name].get("environment", {})
    assert isinstance(env, dict), f"{name}: use the mapping form for environment"
    return {str(k): str(v) for k, v in env.items()}


def test_every_service_runs_as_its_own_container() -> None:
    for name in NAMES:
        assert name in SERVICES, f"{name} is missing from docker-compose.yml"
        assert SERVICES[name]["command"] == ["run", name]
    assert set(SERVICES) - INFRASTRUCTURE == set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_every_variable_set_is_read_by_the_service(name: str) -> None:
    unread = [v for v in environment(name) if not is_read_by(name, v)]
    assert unread == [], (
        f"{name} sets {unread}, which it never reads; known: {sorted(variables_read_by(name))}"
    )


@pytest.mark.parametrize("name", NAMES)
def test_services_share_one_image_and_wait_for_what_they_need(name: str) -> None:
    service = SERVICES[name]
    assert service["image"] == SERVICES["topics"]["image"]
    assert service["build"] == "."
    needs = service["depends_on"]
    assert needs["kafka"]["condition"] == "service_healthy"
    assert needs["postgres"]["condition"] == "service_healthy"
    assert needs["topics"]["condition"] == "service_completed_successfully"
    assert environment(name)["CHOREO_KAFKA_BOOTSTRAP"] == "kafka:9092"
    assert environment(name)["CHOREO_PROFILE"] == "production"


@pytest.mark.parametrize("name", NAMES)
def test_databases_are_postgres_databases_the_init_script_creates(name: str) -> None:
    created = set(
        re.findall(r"CREATE DATABASE (\w+);", (ROOT / "deploy/postgres/init.sql").read_text())
    )
    for variable, value in environment(name).items():
        if variable.endswith("_DB"):
            url = make_url(value)
            assert url.get_backend_name() == "postgresql"
            assert url.host == "postgres"
            assert url.database in created, f"{variable}: database {url.database} is never created"


def test_traces_go_to_the_jaeger_container() -> None:
    for name in NAMES:
        assert environment(name)["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4317"
    assert "4317" in {str(p).split(":")[-1] for p in SERVICES["jaeger"]["ports"]}


def test_topics_are_created_from_the_declared_events_before_services_start() -> None:
    topics = SERVICES["topics"]
    assert topics["command"] == ["topics", "create"]
    assert topics["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert environment("topics")["CHOREO_KAFKA_BOOTSTRAP"] == "kafka:9092"
    kafka = environment("kafka")
    assert kafka["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert kafka["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper


def test_nothing_stops_scaling_out() -> None:
    for name, service in SERVICES.items():
        assert "container_name" not in service, f"{name} has a fixed container name"
    for name in SCALABLE:
        assert "ports" not in SERVICES[name], f"{name} publishes a host port: it could not scale"


def test_infrastructure_has_healthchecks() -> None:
    for name in ("kafka", "postgres"):
        assert SERVICES[name]["healthcheck"]["test"]


def test_the_image_is_slim_non_root_and_checks_its_health() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+)", dockerfile, flags=re.MULTILINE)
    assert all(stage.startswith("python:3.11-slim") for stage in stages)
    assert re.search(r"^USER (?!root)\w+", dockerfile, flags=re.MULTILINE)
    assert "HEALTHCHECK" in dockerfile
    assert 'CMD ["choreo", "health"]' in dockerfile
    assert 'ENTRYPOINT ["choreo"]' in dockerfile
    assert "CHOREO_READY_FILE=" in dockerfile
    for copied in re.findall(r"^COPY (?!--)(\S+)", dockerfile, flags=re.MULTILINE):
        assert (ROOT / copied).exists(), f"Dockerfile copies {copied}, which does not exist"


def test_compose_runs_the_kafka_version_the_rig_tests() -> None:
    """The image tag, the pom the rig resolves and the code's constant name one version."""
    image, tag = SERVICES["kafka"]["image"].split(":")
    assert image == "apache/kafka"
    assert tag == pinned_version() == KAFKA_VERSION


def test_compose_kafka_has_the_settings_the_rig_relies_on() -> None:
    """KRaft with combined roles, a controller listener of its own, advertised to the
    containers, and replication settings that one node can satisfy (the rig's one-node
    values; its three-node cluster uses 3 and min ISR 2)."""
    kafka = environment("kafka")
    assert kafka["KAFKA_PROCESS_ROLES"] == "broker,controller"
    node_id = kafka["KAFKA_NODE_ID"]
    assert kafka["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{node_id}@kafka:9093"
    assert kafka["KAFKA_CONTROLLER_LISTENER_NAMES"] == "CONTROLLER"
    assert set(kafka["KAFKA_LISTENERS"].split(",")) == {"PLAINTEXT://:9092", "CONTROLLER://:9093"}
    assert kafka["KAFKA_ADVERTISED_LISTENERS"] == "PLAINTEXT://kafka:9092"
    protocols = dict(p.split(":") for p in kafka["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert protocols == {"CONTROLLER": "PLAINTEXT", "PLAINTEXT": "PLAINTEXT"}
    for variable in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
        "KAFKA_DEFAULT_REPLICATION_FACTOR",
        "KAFKA_MIN_INSYNC_REPLICAS",
    ):
        assert kafka[variable] == "1", f"{variable}: one node can only hold one replica"
    assert kafka["KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS"] == "0"
    for name in service_names():
        assert environment(name)["CHOREO_KAFKA_TOPIC_REPLICATION"] == "1"
