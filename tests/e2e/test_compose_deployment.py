"""docker-compose.yml's deployment, run without Docker (tests/rig/compose.py).

Every choreokit service of the compose file runs as its own process exactly as its container
would: the Dockerfile's ENTRYPOINT with the service's ``command``, the image's ``ENV`` under the
service's ``env_file`` and ``environment``, in ``depends_on`` order (``topics`` runs to
completion, then ``acls``), each service's healthcheck (the image's ``choreo health``) run until
it passes, ``CHOREO_PROFILE=production`` as the file says. ``scripts/compose-secrets`` makes
the secrets into a directory standing in for ``deploy/secrets``. Compose's hostnames point at
the rig: Apache Kafka as the compose file runs it (SASL_SSL, a SCRAM-SHA-512 user per secrets
env file as ``start.sh`` formats them, the admin the only super user, ACLs enforced, no ACL =
denied), PostgreSQL ($CHOREO_TEST_POSTGRES_URL, the databases of deploy/postgres/init.sql) and
Jaeger v2. The ``acls`` job runs on the Kafka image; its stand-in (tests/rig/kafka_acls.py)
reads its script and applies the ``kafka-acls.sh`` commands the ``topics`` job wrote, so each
service gets exactly what the job would grant it and nothing more.

``choreo demo --bootstrap`` then drives 12 orders through the order intake (with the token a
user sets in ``.env``); the demo's own judgement, the saga observer's API (read with the
operator token compose-secrets minted; without it, 401), and Jaeger's query API (traces of
every service) must all see them.

Deviations, forced by the rig and stated in docs/deployment.md: the rig's broker has its own
certificate (for 127.0.0.1, where it listens), so the ``kafka-ca`` secret is the rig's CA
rather than compose-secrets' (whose broker certificate, for ``kafka``, tests/unit/test_compose.py
verifies); and the gateway's API key, which a user would mint into ``.env``, is minted here.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from choreokit.services.gateway import entry_document, mint_key
from choreokit.services.runtime import KafkaCluster
from choreokit.services.runtime.app import service_names
from choreokit.services.runtime.kafka_artifacts import KafkaRigError
from choreokit.services.runtime.kafka_security import RigSecurity, client_environment
from tests.conftest import POSTGRES_DEFAULT, POSTGRES_ENV
from tests.rig.compose import (
    METRICS_PORT,
    ROOT,
    ComposeRun,
    Rig,
    read_dockerfile,
    read_env_file,
)
from tests.rig.jaeger import Jaeger
from tests.rig.kafka_acls import acls_job, admin_config
from tests.support import wait_until

pytestmark = pytest.mark.slow

ORDERS = 12
SEED = 4  # every kind of injected failure among the first dozen orders
PASSWORD = "CHOREO_KAFKA_SASL_PASSWORD"


def _postgres_server() -> str:
    return os.environ.get(POSTGRES_ENV, POSTGRES_DEFAULT)


@pytest.fixture(scope="module")
def secrets_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What ``scripts/compose-secrets`` makes, as a user runs it before ``docker compose up``."""
    out = tmp_path_factory.mktemp("compose-secrets") / "secrets"
    subprocess.run(
        ["sh", str(ROOT / "scripts/compose-secrets"), str(out)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return out


@pytest.fixture(scope="module")
def secure_kafka(
    secrets_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KafkaCluster]:
    """Apache Kafka as docker-compose.yml's: one SCRAM user per ``<user>.env`` of the secrets
    (start.sh's loop), the admin the super user (server.properties), ACLs enforced."""
    passwords = {
        path.stem: read_env_file(path)[PASSWORD] for path in sorted(secrets_dir.glob("*.env"))
    }
    admin = passwords.pop("admin")
    cluster = KafkaCluster(
        1,
        directory=tmp_path_factory.mktemp("kafka-compose"),
        security=RigSecurity(users=passwords, admin="admin", admin_password=admin),
    )
    try:
        cluster.start()
    except KafkaRigError as exc:
        pytest.fail(
            f"Apache Kafka on SASL_SSL is needed and did not start: {exc}\n"
            "scripts/test resolves its jars up front; openssl must be installed; see docs/broker.md"
        )
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture(scope="module")
def compose(
    secure_kafka: KafkaCluster,
    secrets_dir: Path,
    jaeger: Jaeger,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ComposeRun]:
    """Every choreokit service of docker-compose.yml, up and healthy against the rig."""
    assert secure_kafka.tls is not None
    rig = Rig(
        kafka_bootstrap=secure_kafka.bootstrap,
        postgres_url=_postgres_server(),
        jaeger_otlp_grpc=jaeger.otlp_endpoint,
        jaeger_otlp_http=jaeger.otlp_http_endpoint,
        jaeger_query=jaeger.url,
    )
    # What a user puts in .env: the intake's token (the file's 'change-me' is refused in
    # production) and the gateway's API keys ('choreo gateway-key create').
    storefront = mint_key("storefront", starts=("order.placed",))
    variables = {
        "CHOREO_ORDERS_TOKEN": secrets.token_urlsafe(16),
        "CHOREO_GATEWAY_KEYS": json.dumps([entry_document(storefront.entry)]),
    }
    run = ComposeRun(
        rig,
        tmp_path_factory.mktemp("compose"),
        variables=variables,
        secrets_dir=secrets_dir,
        secret_files={"kafka-ca": secure_kafka.tls.ca},
        stand_ins={"acls": acls_job(admin_config(secure_kafka))},
    )
    try:
        run.ping_postgres()
    except Exception as exc:  # noqa: BLE001 - any reason it does not answer is reported
        pytest.fail(
            f"PostgreSQL is needed at {_postgres_server()} ({exc}); set {POSTGRES_ENV} "
            "to a server where this user may CREATE DATABASE, or run through scripts/test"
        )
    with run:
        yield run


def test_the_compose_file_is_read_as_compose_reads_it(tmp_path: Path) -> None:
    rig = Rig("127.0.0.1:1", "postgresql://u@127.0.0.1:1/x", "http://a", "http://b", "http://c")
    run = ComposeRun(rig, tmp_path, variables={})
    # Merge keys: every service got the shared environment and depends_on of the anchors.
    orders = run.compose["services"]["orders"]
    assert orders["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4317"
    assert orders["depends_on"]["acls"]["condition"] == "service_completed_successfully"
    # Interpolation: ${CHOREO_ORDERS_TOKEN:-change-me} with nothing set.
    assert orders["environment"]["CHOREO_ORDERS_TOKEN"] == "change-me"
    order = run.runnable()
    assert order[0] == "topics"
    services = {"orders", "inventory", "payments", "shipping", "gateway", "saga-observer"}
    assert order.index("acls") < min(order.index(name) for name in services)
    assert set(order) == {"topics", "acls", *services}
    assert run.argv("orders") == ["choreo", "run", "orders"]
    image = read_dockerfile(ROOT / "Dockerfile")
    assert image.env["CHOREO_PROFILE"] == "production"
    health = run.healthcheck("orders")
    assert health is not None
    assert health["test"] == ["CMD", "choreo", "health"]
    assert run.healthcheck("topics") is None
    # Files: env_file under environment, secrets and volumes where the container sees them.
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    (secrets_dir / "saga-observer.env").write_text("CHOREO_KAFKA_SASL_PASSWORD=pw\n")
    mounted = ComposeRun(rig, tmp_path / "run", variables={}, secrets_dir=secrets_dir)
    mounted.databases["observer"] = "observer_of_this_run"  # what create_databases records
    env, _ = mounted.environment("saga-observer")
    assert env["CHOREO_KAFKA_SASL_PASSWORD"] == "pw"
    assert env["CHOREO_OBSERVER_TOKENS_FILE"] == str(secrets_dir / "observer-tokens.yaml")
    assert env["CHOREO_KAFKA_SSL_CAFILE"] == str(secrets_dir / "ca.pem")
    script = mounted.local_argv("topics")[-1]
    written = tmp_path / "run/volumes/acls/acls.sh"
    assert script.endswith(f"> {written}"), script
    assert mounted.local_path("acls", "sh /acls/acls.sh") == f"sh {written}"
    assert mounted.local_path("acls", "/acls-other /acls") == f"/acls-other {written.parent}"


def test_the_demo_runs_through_the_compose_deployment(
    compose: ComposeRun,
    secure_kafka: KafkaCluster,
    secrets_dir: Path,
    jaeger: Jaeger,
    tmp_path: Path,
) -> None:
    for name in service_names():
        process = compose.processes[name]
        assert process.popen.poll() is None, f"{name} stopped:\n{process.tail()}"
    for name in ("inventory", "payments", "shipping"):  # consumer-only: their own port
        port = compose.processes[name].ports[METRICS_PORT]
        health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
        assert health.status_code == 200, f"{name}: {health.status_code} {health.text[:200]}"
    orders_port = compose.processes["orders"].ports[8082]
    observer_port = compose.published["saga-observer"][8080]
    observer = f"http://127.0.0.1:{observer_port}"
    token = compose.processes["orders"].env["CHOREO_ORDERS_TOKEN"]
    for name, process in compose.processes.items():  # as the compose file says, no override
        assert process.env["CHOREO_PROFILE"] == "production", name
    # The observer reads only with a token: the operator's that compose-secrets minted.
    operator = (secrets_dir / "observer-operator.token").read_text().strip()
    assert httpx.get(f"{observer}/api/flows", timeout=10).status_code == 401
    authorized = {"Authorization": f"Bearer {operator}"}
    since_us = int(time.time() * 1e6)
    assert secure_kafka.security is not None
    assert secure_kafka.tls is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHOREO_", "OTEL_"))}
    # The demo follows the flows on the topics as the admin (every topic, any group).
    env |= client_environment(
        secure_kafka.security, secure_kafka.tls, secure_kafka.bootstrap, "admin"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "choreokit.services.cli",
            "demo",
            "--json",
            "--bootstrap",
            secure_kafka.bootstrap,
            "--orders-url",
            f"http://127.0.0.1:{orders_port}",
            "--orders-token",
            token,
            "--observer-url",
            observer,
            "--observer-token",
            operator,
            "--orders",
            str(ORDERS),
            "--seed",
            str(SEED),
            "--timeout",
            "180",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    logs = "\n".join(f"--- {n}\n{p.tail(15)}" for n, p in compose.processes.items())
    assert result.stdout, f"{result.stderr[-3000:]}\n{logs}"
    summary: dict[str, Any] = json.loads(result.stdout)
    assert result.returncode == 0, f"{json.dumps(summary, indent=2)}\n{result.stderr[-2000:]}"
    assert summary["orders"] == ORDERS
    assert summary["unexplained"] == []
    assert set(summary["outcomes"]) == {"completed", "failed", "compensated"}

    # The observer judged every flow, and agrees with what the demo saw on the topics.
    assert summary["observer_agrees"] is True, summary["observer"]
    counts = httpx.get(
        f"{observer}/api/counts", params={"saga": "order"}, headers=authorized, timeout=10
    ).json()
    assert int(counts["total"]) >= ORDERS
    assert not counts["by_status"].get("running"), counts
    flows = httpx.get(
        f"{observer}/api/flows", params={"limit": "100"}, headers=authorized, timeout=10
    ).json()
    assert flows, "the observer lists no flow"

    # Jaeger holds traces of every service that handled the orders.
    def traced_services() -> set[str]:
        return set(jaeger.get("/api/services")["data"] or [])

    wanted = {"orders", "inventory", "payments", "shipping", "saga-observer"}
    wait_until(lambda: wanted <= traced_services(), timeout=60, what=f"Jaeger to know {wanted}")

    def traces_of(service: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = (
            jaeger.get(
                "/api/traces",
                service=service,
                start=str(since_us),
                end=str(int(time.time() * 1e6) + 60_000_000),
                limit="100",
            )["data"]
            or []
        )
        return found

    # Each service exports its spans in batches (every few seconds): wait for them.
    for service in sorted(wanted):
        wait_until(
            lambda service=service: bool(traces_of(service)),  # type: ignore[misc]
            timeout=30,
            what=f"a trace of {service} since the demo began in Jaeger "
            f"(it knows {sorted(traced_services())})",
        )
