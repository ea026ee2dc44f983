"""The secure rig's pieces without a broker: certificates, properties, SCRAM arguments."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from choreokit.services.runtime.kafka_artifacts import KafkaRigError
from choreokit.services.runtime.kafka_cluster import KafkaCluster
from choreokit.services.runtime.kafka_security import (
    AUTHORIZER,
    RigSecurity,
    client_settings,
    make_certificates,
    scram_arguments,
    server_properties,
)


def test_the_broker_certificate_verifies_for_the_rig_host_against_the_run_ca(
    tmp_path: Path,
) -> None:
    tls = make_certificates(tmp_path, "127.0.0.1")
    keystore = tls.keystore.read_text()
    assert keystore.index("PRIVATE KEY") < keystore.index("CERTIFICATE")
    assert not (tmp_path / "ca.key").exists()  # nothing can sign more certificates
    cert = tmp_path / "first.pem"
    cert.write_text(keystore[keystore.index("-----BEGIN CERTIFICATE-----") :])
    verified = subprocess.run(
        ["openssl", "verify", "-CAfile", str(tls.ca), "-verify_ip", "127.0.0.1", str(cert)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verified.returncode == 0, verified.stderr


def test_clients_only_reach_sasl_ssl_and_nothing_is_allowed_without_an_acl(
    tmp_path: Path,
) -> None:
    security = RigSecurity(users={"orders": "o"})
    tls = make_certificates(tmp_path, "127.0.0.1")
    props = server_properties(security, tls, host="127.0.0.1", port=9, controller_port=10)
    assert props["advertised.listeners"] == "SASL_SSL://127.0.0.1:9"
    assert props["authorizer.class.name"] == AUTHORIZER
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert props["super.users"] == "User:admin"
    assert props["ssl.keystore.type"] == props["ssl.truststore.type"] == "PEM"
    assert "PLAINTEXT://" not in props["listeners"]
    assert scram_arguments(security) == [
        "--add-scram",
        "SCRAM-SHA-512=[name=orders,password=o]",
        "--add-scram",
        f"SCRAM-SHA-512=[name=admin,password={security.admin_password}]",
    ]
    settings = client_settings(security, tls, "orders", bootstrap="127.0.0.1:9")
    assert settings.sasl_username == "orders"
    assert settings.ssl_cafile == tls.ca


def test_a_secure_rig_has_one_node_and_known_users() -> None:
    with pytest.raises(KafkaRigError, match="one node"):
        KafkaCluster(3, security=RigSecurity())
    with pytest.raises(KafkaRigError, match="RigSecurity"):
        RigSecurity(users={"orders": "o"}).password("payments")
    assert RigSecurity().admin_password != RigSecurity().admin_password
