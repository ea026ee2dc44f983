"""docker-compose.yml and the Dockerfile, checked against the services and their settings.

No Docker engine runs here, so the file is kept correct by reading it: every
service is present and runs itself, every variable it sets is one its settings
read, the images and commands agree, and nothing stops `--scale`.
"""

from __future__ import annotations

import re
import subprocess
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
INFRASTRUCTURE = {"kafka", "postgres", "jaeger", "topics", "acls"}
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
    assert needs["acls"]["condition"] == "service_completed_successfully"
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


def test_topics_and_acls_are_made_from_the_declared_services_before_services_start() -> None:
    topics = SERVICES["topics"]
    script = " ".join(topics["command"])
    assert topics["entrypoint"] == ["sh", "-c"]
    assert script.startswith("choreo topics create && choreo topics acls ")
    assert "--command-config /tmp/admin.properties" in script
    written = script.rsplit("> ", 1)[1].strip()
    volume, _, mounted = next(v for v in topics["volumes"] if v.startswith("acls:")).partition(":")
    assert written.startswith(mounted + "/")
    assert topics["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert environment("topics")["CHOREO_KAFKA_BOOTSTRAP"] == "kafka:9092"
    assert environment("topics")["CHOREO_KAFKA_SASL_USERNAME"] == "admin"  # the super user
    assert topics["env_file"] == "deploy/secrets/admin.env"
    acls = SERVICES["acls"]
    assert acls["image"] == SERVICES["kafka"]["image"]  # it has kafka-acls.sh
    assert acls["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    assert f"{volume}:/acls:ro" in acls["volumes"]
    applier = (ROOT / "deploy/kafka/secure/apply-acls.sh").read_text()
    assert f"/acls/{Path(written).name}" in applier
    assert "> /tmp/admin.properties" in applier
    kafka = server_properties()
    assert kafka["auto.create.topics.enable"] == "false"
    assert kafka["process.roles"] == "broker,controller"  # KRaft, no ZooKeeper


def server_properties() -> dict[str, str]:
    text = (ROOT / "deploy/kafka/secure/server.properties").read_text()
    pairs = [line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#")]
    return dict(pairs)


@pytest.mark.parametrize("name", service_names())
def test_every_service_is_its_own_principal_on_sasl_ssl(name: str) -> None:
    """Each service: SASL_SSL, SCRAM-SHA-512, user = its name, the CA from a compose secret,
    its password from its own env file (never inline)."""
    env = environment(name)
    assert env["CHOREO_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert env["CHOREO_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert env["CHOREO_KAFKA_SASL_USERNAME"] == name
    assert "CHOREO_KAFKA_SASL_PASSWORD" not in env
    assert SERVICES[name]["env_file"] == f"deploy/secrets/{name}.env"
    assert "kafka-ca" in SERVICES[name]["secrets"]
    assert env["CHOREO_KAFKA_SSL_CAFILE"] == "/run/secrets/kafka-ca"
    assert COMPOSE["secrets"]["kafka-ca"]["file"] == "./deploy/secrets/ca.pem"


def test_the_secrets_script_makes_every_file_compose_reads(tmp_path: Path) -> None:
    """scripts/compose-secrets writes each env file (a password only), the CA and a broker
    certificate for the name the clients connect to (kafka), signed by that CA."""
    out = tmp_path / "secrets"
    subprocess.run(["sh", str(ROOT / "scripts/compose-secrets"), str(out)], check=True, timeout=60)
    for name in [*service_names(), "topics"]:
        env_file = out / Path(SERVICES[name]["env_file"]).name
        lines = env_file.read_text().splitlines()
        assert len(lines) == 1
        assert re.fullmatch(r"CHOREO_KAFKA_SASL_PASSWORD=[0-9a-f]{48}", lines[0])
    passwords = {p.read_text() for p in out.glob("*.env")}
    assert len(passwords) == len(service_names()) + 1  # every principal its own
    certificate = tmp_path / "kafka.crt"
    keystore = (out / "kafka-keystore.pem").read_text()
    assert "PRIVATE KEY" in keystore
    certificate.write_text(keystore[keystore.index("-----BEGIN CERTIFICATE-----") :])
    verified = subprocess.run(
        ["openssl", "verify", "-CAfile", str(out / "ca.pem"), "-verify_hostname", "kafka",
         str(certificate)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stderr


def test_the_observer_reads_the_token_file_the_secrets_script_mints(tmp_path: Path) -> None:
    """The production profile needs CHOREO_OBSERVER_TOKENS_FILE: compose mounts the hashed
    tokens scripts/compose-secrets writes, which accept the operator token it mints (kept
    readable by its owner only) and no other."""
    from choreokit.services.runtime.access import Principal, Role, TokenStore

    observer = SERVICES["saga-observer"]
    path = environment("saga-observer")["CHOREO_OBSERVER_TOKENS_FILE"]
    secret = path.removeprefix("/run/secrets/")
    assert path == f"/run/secrets/{secret}"
    assert secret in observer["secrets"]
    out = tmp_path / "secrets"
    subprocess.run(["sh", str(ROOT / "scripts/compose-secrets"), str(out)], check=True, timeout=60)
    tokens_file = ROOT / COMPOSE["secrets"][secret]["file"]
    assert tokens_file.parent == ROOT / "deploy/secrets"
    store = TokenStore.load(out / tokens_file.name)
    assert len(store) == 1
    token_file = out / "observer-operator.token"
    token = token_file.read_text().strip()
    assert token.startswith("chk_")
    assert store.verify(token) == Principal("operator", Role.OPERATOR)
    assert store.verify(token[:-1]) is None
    assert token not in (out / tokens_file.name).read_text()  # only its hash
    assert token_file.stat().st_mode & 0o077 == 0
    assert (out / tokens_file.name).stat().st_mode & 0o004  # the container's user reads it
    # Run again (after adding a service): the token the operator holds stays valid.
    subprocess.run(["sh", str(ROOT / "scripts/compose-secrets"), str(out)], check=True, timeout=60)
    assert TokenStore.load(out / tokens_file.name).verify(token) is not None


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
    containers, the secure rig's security settings (kafka_security.py) but for the paths and
    the JAAS entries start.sh adds, and replication settings one node can satisfy."""
    from choreokit.services.runtime.kafka_security import RigSecurity, RigTls
    from choreokit.services.runtime.kafka_security import server_properties as rig_properties

    kafka = server_properties()
    assert SERVICES["kafka"]["entrypoint"] == ["/etc/kafka/secure/start.sh"]
    rig = rig_properties(
        RigSecurity(), RigTls(Path("/x")), host="127.0.0.1", port=1, controller_port=2
    )
    for key, value in rig.items():
        if key.endswith(".jaas.config"):
            assert key not in kafka, f"{key} holds a password: start.sh adds it"
            assert key in (ROOT / "deploy/kafka/secure/start.sh").read_text()
        elif key.endswith(".location"):
            assert kafka[key].startswith("/etc/kafka/secrets/")
        elif "listeners" not in key:
            assert kafka[key] == value, key
    assert kafka["listeners"] == "SASL_SSL://:9092,CONTROLLER://:9093"
    assert kafka["advertised.listeners"] == "SASL_SSL://kafka:9092"
    assert kafka["controller.quorum.voters"] == f"{kafka['node.id']}@kafka:9093"
    assert kafka["controller.listener.names"] == "CONTROLLER"
    for key in (
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
        "default.replication.factor",
        "min.insync.replicas",
    ):
        assert kafka[key] == "1", f"{key}: one node can only hold one replica"
    assert kafka["group.initial.rebalance.delay.ms"] == "0"
    for name in service_names():
        assert environment(name)["CHOREO_KAFKA_TOPIC_REPLICATION"] == "1"
    healthcheck = " ".join(SERVICES["kafka"]["healthcheck"]["test"])
    assert "--command-config /tmp/admin.properties" in healthcheck
    assert "> /tmp/admin.properties" in (ROOT / "deploy/kafka/secure/start.sh").read_text()
