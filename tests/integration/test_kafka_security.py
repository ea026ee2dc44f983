"""Apache Kafka on SASL_SSL with ACLs enforced: bad credentials get nothing, each service only
what `choreo topics acls` grants it, and the demo completes with every service on its own
principal.

The rig (one node, module scope) is started here: SCRAM-SHA-512 users for every installed
service, the StandardAuthorizer with no-ACL-denies, the topics created by the admin and the
ACLs the command prints applied with an admin client.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError, TopicAuthorizationFailedError

from choreokit.events import KafkaSettings, PublishError, Service, client_options, ensure_topics
from choreokit.services.cli._topics import declared_topics
from choreokit.services.example.contracts.payments import PaymentAuthorized
from choreokit.services.runtime import free_port
from choreokit.services.runtime.app import service_names
from choreokit.services.runtime.kafka_artifacts import KafkaRigError
from choreokit.services.runtime.kafka_cluster import KafkaCluster
from choreokit.services.runtime.kafka_security import (
    RigSecurity,
    client_environment,
    make_certificates,
)
from tests.rig.kafka_acls import admin_config, apply_rules
from tests.support import wait_until

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
FAST = {"request_timeout": "5s"}
"""Bad connections fail within seconds, not the default 30."""


def choreo(*args: str) -> list[str]:
    return [sys.executable, "-m", "choreokit.services.cli", *args]


def clean_environment() -> dict[str, str]:
    """This process's environment without any CHOREO_* (each test says what it wants).

    The example domain's services are the deployment under test: it is declared.
    """
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CHOREO_", "OTEL_"))}
    return {**clean, "CHOREO_EXAMPLE": "1"}


@pytest.fixture(scope="module", autouse=True)
def example_declared() -> Iterator[None]:
    """The example's services are what the ACLs, users and services here are derived from."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CHOREO_EXAMPLE", "1")
        yield


def acl_rules() -> list[dict[str, str]]:
    """What `choreo topics acls --json` prints for the installed services."""
    result = subprocess.run(
        choreo("topics", "acls", "--json"),
        env=clean_environment(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    rules: list[dict[str, str]] = json.loads(result.stdout)
    return rules


@pytest.fixture(scope="module")
def secure(
    tmp_path_factory: pytest.TempPathFactory, example_declared: None
) -> Iterator[KafkaCluster]:
    """One Apache Kafka node on SASL_SSL with ACLs on, topics made, ACLs applied."""
    users = {name: secrets.token_urlsafe(12) for name in service_names()}
    cluster = KafkaCluster(
        1, directory=tmp_path_factory.mktemp("kafka-secure"), security=RigSecurity(users=users)
    )
    try:
        cluster.start()
    except KafkaRigError as exc:
        pytest.fail(
            f"Apache Kafka on SASL_SSL is needed and did not start: {exc}\n"
            "scripts/test resolves its jars up front; openssl must be installed; see docs/broker.md"
        )
    try:
        asyncio.run(ensure_topics(cluster.settings(), declared_topics()))
        apply_rules(admin_config(cluster), acl_rules())
        yield cluster
    finally:
        cluster.close()


def end_offsets(cluster: KafkaCluster, topic: str) -> dict[int, int]:
    """Each partition's end offset of ``topic``, read by the admin."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({**admin_config(cluster), "group.id": "choreo-test-admin"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in partitions
        }
    finally:
        consumer.close()


def bad_settings(cluster: KafkaCluster, kind: str, scratch: Path) -> KafkaSettings:
    if kind == "wrong password":
        return cluster.settings("inventory", sasl_password="not-the-password", **FAST)
    if kind == "wrong CA":
        other = make_certificates(scratch / "other-ca", "127.0.0.1")
        return cluster.settings("inventory", ssl_cafile=other.ca, **FAST)
    assert kind == "plaintext"
    return KafkaSettings(bootstrap=cluster.bootstrap, request_timeout="5s")  # type: ignore[arg-type]


def environment_of(settings: KafkaSettings) -> dict[str, str]:
    """``settings`` as the CHOREO_KAFKA_* variables a child process reads."""
    env = {
        "CHOREO_KAFKA_BOOTSTRAP": settings.bootstrap,
        "CHOREO_KAFKA_REQUEST_TIMEOUT": "5s",
        "CHOREO_KAFKA_SECURITY_PROTOCOL": settings.security_protocol.value,
    }
    if settings.ssl_cafile is not None:
        env["CHOREO_KAFKA_SSL_CAFILE"] = str(settings.ssl_cafile)
    if settings.sasl_mechanism is not None:
        env["CHOREO_KAFKA_SASL_MECHANISM"] = settings.sasl_mechanism.value
        env["CHOREO_KAFKA_SASL_USERNAME"] = str(settings.sasl_username)
        assert settings.sasl_password is not None
        env["CHOREO_KAFKA_SASL_PASSWORD"] = settings.sasl_password.get_secret_value()
    return env


BAD = ["wrong password", "wrong CA", "plaintext"]
REASONS = {
    "wrong password": "authentication",
    "wrong CA": "certificate verify failed",
    "plaintext": "cannot reach kafka",
}


@pytest.mark.parametrize("kind", BAD)
def test_bad_credentials_produce_and_consume_nothing(
    secure: KafkaCluster, kind: str, tmp_path: Path
) -> None:
    settings = bad_settings(secure, kind, tmp_path)
    before = end_offsets(secure, "orders")

    async def produce() -> None:
        producer = AIOKafkaProducer(**client_options(settings))
        try:
            await producer.start()
            await producer.send_and_wait("orders", b"must not arrive", key=b"k")
        finally:
            await producer.stop()

    async def consume() -> None:
        consumer = AIOKafkaConsumer("orders", group_id="inventory", **client_options(settings))
        try:
            await consumer.start()
            await consumer.getmany(timeout_ms=2000)
        finally:
            await consumer.stop()

    with pytest.raises((KafkaError, OSError, TimeoutError)):
        asyncio.run(asyncio.wait_for(produce(), 30))
    with pytest.raises((KafkaError, OSError, TimeoutError)):
        asyncio.run(asyncio.wait_for(consume(), 30))
    assert end_offsets(secure, "orders") == before


@pytest.mark.parametrize("kind", BAD)
def test_a_service_with_bad_credentials_is_never_ready_and_says_why(
    secure: KafkaCluster, kind: str, tmp_path: Path
) -> None:
    ready = tmp_path / "inventory.ready"
    env = {
        **clean_environment(),
        **environment_of(bad_settings(secure, kind, tmp_path)),
        "CHOREO_READY_FILE": str(ready),
        "CHOREO_DATA_DIR": str(tmp_path / "data"),
    }
    result = subprocess.run(
        choreo("run", "inventory"),
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode != 0
    assert not ready.exists()
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: inventory:"), result.stderr[-2000:]
    assert REASONS[kind] in result.stderr.lower(), result.stderr[-2000:]


def test_a_service_writing_an_undeclared_topic_is_refused_by_the_broker(
    secure: KafkaCluster,
) -> None:
    """inventory may write inventory and orders.dlq; a payments event is refused, nothing lands."""
    before = end_offsets(secure, "payments")
    # No publishes= declared, so choreokit itself lets anything through: the broker decides.
    rogue = Service("inventory", settings=secure.settings("inventory", **FAST))

    async def publish() -> None:
        await rogue.start()
        try:
            await rogue.publish(
                PaymentAuthorized(order_id="o-1", payment_id="p-1", amount_cents=100)
            )
        finally:
            await rogue.stop()

    with pytest.raises(PublishError) as caught:
        asyncio.run(asyncio.wait_for(publish(), 60))
    assert isinstance(caught.value.__cause__, TopicAuthorizationFailedError)
    assert "refused this principal WRITE on topic 'payments'" in str(caught.value)
    assert "choreo topics acls" in str(caught.value)
    assert end_offsets(secure, "payments") == before


def test_the_demo_completes_with_each_service_on_its_own_principal(
    secure: KafkaCluster, tmp_path: Path
) -> None:
    assert secure.security is not None
    assert secure.tls is not None
    shared: dict[str, Any] = {
        key: value
        for key, value in client_environment(
            secure.security, secure.tls, secure.bootstrap, secure.security.admin
        ).items()
        if key not in {"CHOREO_KAFKA_SASL_USERNAME", "CHOREO_KAFKA_SASL_PASSWORD"}
    }
    for name in service_names():
        (tmp_path / f"{name}.env").write_text(
            f"CHOREO_KAFKA_SASL_USERNAME={name}\n"
            f"CHOREO_KAFKA_SASL_PASSWORD={secure.security.password(name)}\n"
        )
    orders_port = free_port()
    env = {
        **clean_environment(),
        **shared,
        "CHOREO_ORDERS_PORT": str(orders_port),
        "CHOREO_OBSERVER_PORT": str(free_port()),
        "CHOREO_GATEWAY_PORT": str(free_port()),
    }
    data_dir = tmp_path / "dev"
    log = (tmp_path / "dev.log").open("wb")
    dev = subprocess.Popen(
        choreo(
            "dev",
            "--bootstrap",
            secure.bootstrap,
            "--data-dir",
            str(data_dir),
            "--service-env",
            str(tmp_path / "{service}.env"),
        ),
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )

    def up() -> bool:
        assert dev.poll() is None, (tmp_path / "dev.log").read_text()[-3000:]
        try:
            return bool(json.loads((data_dir / "dev.json").read_text()).get("ready"))
        except (OSError, ValueError):
            return False

    try:
        wait_until(up, timeout=180, what="choreo dev on the secure rig ready")
        admin = client_environment(
            secure.security, secure.tls, secure.bootstrap, secure.security.admin
        )
        result = subprocess.run(
            choreo(
                "demo",
                "--json",
                "--orders",
                "12",
                "--bootstrap",
                secure.bootstrap,
                "--orders-url",
                f"http://127.0.0.1:{orders_port}",
                "--timeout",
                "180",
            ),
            env={**clean_environment(), **admin},
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
    finally:
        dev.send_signal(2)
        try:
            dev.wait(timeout=60)
        except subprocess.TimeoutExpired:
            dev.kill()
            dev.wait()
        log.close()
    assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-2000:]
    summary = json.loads(result.stdout)
    assert summary["ok"] is True
    assert sum(summary["outcomes"].values()) == 12
    logs = "".join(p.read_text(errors="replace") for p in (data_dir / "logs").glob("*.log"))
    assert "TopicAuthorizationFailed" not in logs
    assert "GroupAuthorizationFailed" not in logs


def test_a_transactional_service_gets_its_transactional_id_from_the_printed_acls(
    secure: KafkaCluster,
) -> None:
    """Without a TransactionalId ACL the broker grants inventory no transactional producer (a
    clear TransactionsUnavailableError); with what `choreo topics acls` prints under
    CHOREO_KAFKA_TRANSACTIONS=on (its name as a prefix) the producer starts, fencing included."""
    from choreokit.events import TransactionsUnavailableError
    from choreokit.events._kafka import start_transactional_producer

    settings = secure.settings("inventory", transactions=True, **FAST)

    async def start(transactional_id: str) -> None:
        producer = await start_transactional_producer(
            settings, client_id="inventory", transactional_id=transactional_id
        )
        await producer.stop()

    with pytest.raises(TransactionsUnavailableError) as refused:
        asyncio.run(asyncio.wait_for(start("inventory-acl-test"), 60))
    assert "TransactionalId" in str(refused.value)
    result = subprocess.run(
        choreo("topics", "acls", "--json", "--service", "inventory"),
        env={**clean_environment(), "CHOREO_KAFKA_TRANSACTIONS": "on"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    rules = [r for r in json.loads(result.stdout) if r["resource_type"] == "TRANSACTIONAL_ID"]
    assert {(r["resource_name"], r["pattern_type"]) for r in rules} == {("inventory", "PREFIXED")}
    apply_rules(admin_config(secure), rules)
    asyncio.run(asyncio.wait_for(start("inventory-acl-test"), 60))
    with pytest.raises(TransactionsUnavailableError):  # another service's id stays refused
        asyncio.run(asyncio.wait_for(start("payments-0"), 60))
