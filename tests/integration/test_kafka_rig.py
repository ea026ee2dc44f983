"""The Apache Kafka launcher's own promises: sizes it accepts, and a node that cannot start
is an error showing the end of that node's log."""

from __future__ import annotations

from pathlib import Path

import pytest

from choreokit.services.runtime import KafkaCluster, KafkaRigError


def test_a_rig_has_one_node_or_three() -> None:
    with pytest.raises(KafkaRigError, match="1 or 3 nodes, not 2"):
        KafkaCluster(2)


def test_a_node_that_fails_to_start_shows_the_end_of_its_log(tmp_path: Path) -> None:
    """The storage tool accepts this configuration; the broker does not (it loads the
    authorizer class at start), so the node exits and the error quotes its log."""
    cluster = KafkaCluster(
        1, directory=tmp_path, properties={"authorizer.class.name": "no.such.Authorizer"}
    )
    with pytest.raises(KafkaRigError) as caught:
        cluster.start()
    message = str(caught.value)
    assert "Kafka node 1 exited with code" in message
    assert str(tmp_path / "node-1" / "node.log") in message
    assert "no.such.Authorizer" in message  # the log's own words, not just ours
    assert cluster.pids == [None]
