"""A rig whose nodes advertise another address to clients (a proxy): checked without a JVM."""

from __future__ import annotations

from pathlib import Path

import pytest

from choreokit.services.runtime.kafka_artifacts import KafkaArtifacts, KafkaRigError
from choreokit.services.runtime.kafka_cluster import KafkaCluster
from choreokit.services.runtime.kafka_security import RigSecurity

NO_JVM = KafkaArtifacts(java="java", classpath=(), source="none")


def properties(cluster: KafkaCluster) -> list[dict[str, str]]:
    """Each planned node's server.properties, as the cluster would write them."""
    nodes = cluster._plan(NO_JVM)
    voters = ",".join(f"{n.node_id}@{n.host}:{n.controller_port}" for n in nodes)
    found = []
    for node in nodes:
        text = cluster._server_properties(node, voters)
        found.append(dict(line.split("=", 1) for line in text.splitlines()))
    return found


def test_clients_are_sent_to_the_advertised_address_and_brokers_talk_on_their_own_listener(
    tmp_path: Path,
) -> None:
    cluster = KafkaCluster(
        3, directory=tmp_path, advertised=["127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"]
    )
    for index, props in enumerate(properties(cluster), start=1):
        client, internal, controller = props["listeners"].split(",")
        assert client.startswith("PLAINTEXT://127.0.0.1:")
        assert internal.startswith("INTERNAL://127.0.0.1:")
        assert controller.startswith("CONTROLLER://127.0.0.1:")
        assert props["advertised.listeners"] == (f"PLAINTEXT://127.0.0.1:700{index},{internal}")
        assert props["inter.broker.listener.name"] == "INTERNAL"
        assert "INTERNAL:PLAINTEXT" in props["listener.security.protocol.map"]
        ports = {int(x.rsplit(":", 1)[1]) for x in (client, internal, controller)}
        assert len(ports) == 3  # three listeners, three ports


def test_without_advertised_a_node_advertises_its_own_client_port(tmp_path: Path) -> None:
    [props] = properties(KafkaCluster(1, directory=tmp_path))
    assert props["advertised.listeners"] == props["listeners"].split(",")[0]
    assert props["inter.broker.listener.name"] == "PLAINTEXT"


@pytest.mark.parametrize(
    ("advertised", "error"),
    [
        (["127.0.0.1:7001"], "1 address\\(es\\) for 3 node"),
        (["127.0.0.1:7001", "127.0.0.1:7002", "nowhere"], "'nowhere' is not host:port"),
        (["127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:99999"], "is not host:port"),
    ],
)
def test_advertised_names_one_address_per_node(advertised: list[str], error: str) -> None:
    with pytest.raises(KafkaRigError, match=error):
        KafkaCluster(3, advertised=advertised)


def test_a_secure_rig_cannot_advertise_another_address() -> None:
    with pytest.raises(KafkaRigError, match="drop advertised"):
        KafkaCluster(1, security=RigSecurity(), advertised=["127.0.0.1:7001"])
