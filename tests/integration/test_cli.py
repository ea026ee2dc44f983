"""The command line against real brokers (Tansu and Apache Kafka): broker, publish, tail."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from choreokit.events import KafkaSettings
from choreokit.events.dlq import AUDIT_TOPIC
from choreokit.services.runtime import answers_kafka, brokers_in_metadata, free_port
from tests.integration.kafka_io import produce_raw
from tests.support import unique, wait_until

CHOREO = str(Path(sys.executable).with_name("choreo"))


def choreo(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CHOREO, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_broker_command_starts_answers_and_stops_on_sigint() -> None:
    port = free_port()
    process = subprocess.Popen(
        [CHOREO, "broker", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: answers_kafka("127.0.0.1", port), what="the broker to answer")
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=15)
        assert process.returncode == 0, err
        assert f"listening on 127.0.0.1:{port}" in err
        assert "stopped" in err
        assert not answers_kafka("127.0.0.1", port)
    finally:
        if process.poll() is None:
            process.kill()


@pytest.mark.engines("tansu", "kafka")
def test_broker_command_refuses_a_taken_port(kafka: KafkaSettings) -> None:
    port = kafka.bootstrap.rsplit(":", 1)[1]
    result = choreo("broker", "--port", port, timeout=30)
    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1 is already in use" in result.stderr


def test_broker_command_says_when_the_binary_is_missing(tmp_path: Path) -> None:
    result = choreo(
        "broker", "--port", str(free_port()), env={"CHOREO_TANSU_BIN": str(tmp_path / "nope")}
    )
    assert result.returncode == 1
    assert "is not an executable file" in result.stderr


def test_broker_command_runs_three_kafka_nodes_and_sigterm_stops_every_node(
    tmp_path: Path,
) -> None:
    """``--engine kafka --nodes 3`` prints a bootstrap that lists all three brokers, then node
    pids; SIGTERM stops the command and every node, and no node process is left."""
    port = free_port()
    process = subprocess.Popen(
        [CHOREO, "broker", "--engine", "kafka", "--nodes", "3", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=(tmp_path / "broker.err").open("w"),
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(4)]  # ends early if the command dies
        assert lines[0].startswith("bootstrap: "), (lines, (tmp_path / "broker.err").read_text())
        servers = lines[0].removeprefix("bootstrap: ").strip().split(",")
        assert len(servers) == 3
        assert servers[0] == f"127.0.0.1:{port}"
        found = [re.match(r"node (\d): pid (\d+),", line) for line in lines[1:]]
        pids = [int(match[2]) for match in found if match]
        assert len(pids) == 3, lines
        assert all(pid_alive(pid) for pid in pids)
        for server in servers:
            host, node_port = server.rsplit(":", 1)
            assert brokers_in_metadata(host, int(node_port)) == {1, 2, 3}

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0, (tmp_path / "broker.err").read_text()
        assert "Apache Kafka stopped" in (tmp_path / "broker.err").read_text()
        wait_until(lambda: not any(pid_alive(pid) for pid in pids), what="every node to exit")
        assert brokers_in_metadata("127.0.0.1", port) is None
    finally:
        if process.poll() is None:
            process.kill()


def test_broker_command_says_what_to_set_when_kafka_jars_are_missing(tmp_path: Path) -> None:
    result = choreo(
        "broker", "--engine", "kafka", env={"CHOREO_KAFKA_HOME": str(tmp_path)}, timeout=30
    )
    assert result.returncode == 1
    assert "is not an unpacked Apache Kafka distribution" in result.stderr
    assert "CHOREO_KAFKA_HOME" in result.stderr


def pid_alive(pid: int) -> bool:
    """Whether a process (not a zombie) has this id."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture
def event_module(tmp_path: Path) -> tuple[dict[str, str], str, str]:
    """A module of events on a topic of this test's own, found through CHOREO_EVENT_MODULES."""
    name, topic = unique("cli_events_"), unique("cli")
    (tmp_path / f"{name}.py").write_text(
        textwrap.dedent(
            f"""
            from choreokit.events import Event

            class Note(Event, type="{topic}.noted", version=1, topic="{topic}"):
                text: str
                stars: int = 0
            """
        )
    )
    env = {
        "CHOREO_EVENT_MODULES": name,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
    }
    return env, f"{topic}.noted", topic


@pytest.mark.engines("tansu", "kafka")
def test_publish_then_tail_shows_the_event_decoded(
    kafka: KafkaSettings, event_module: tuple[dict[str, str], str, str]
) -> None:
    env, event_type, topic = event_module
    env = {**env, "CHOREO_KAFKA_BOOTSTRAP": kafka.bootstrap}
    published = choreo(
        "publish",
        event_type,
        "--data",
        '{"text": "hello", "stars": 5}',
        "--correlation-id",
        "flow-cli",
        "--json",
        env=env,
    )
    assert published.returncode == 0, published.stderr
    sent = json.loads(published.stdout)
    assert sent["topic"] == topic
    assert sent["correlationid"] == "flow-cli"

    import asyncio

    asyncio.run(
        produce_raw(kafka.bootstrap, topic, [(b"x", b"\x00garbage", [("ce_type", b"\xff")])])
    )
    tailed = choreo("tail", topic, "--from-beginning", "--max", "2", "--json", env=env)
    assert tailed.returncode == 0, tailed.stderr
    lines = [json.loads(line) for line in tailed.stdout.splitlines()]
    by_status = {line["status"]: line for line in lines}
    ok = by_status["ok"]
    assert ok["attributes"]["id"] == sent["id"]
    assert ok["attributes"]["type"] == event_type
    assert ok["attributes"]["correlationid"] == "flow-cli"
    assert ok["attributes"]["source"] == "/cli/choreo"
    assert ok["data"] == {"text": "hello", "stars": 5}
    assert ok["key"] == "flow-cli"
    assert by_status["undecodable"]["error"].startswith("InvalidEnvelopeError")

    human = choreo("tail", topic, "--from-beginning", "--max", "2", env=env)
    assert f"{event_type} v1 id={sent['id']}" in human.stdout
    assert "UNDECODABLE" in human.stdout


def test_publish_says_when_the_broker_is_unreachable(
    event_module: tuple[dict[str, str], str, str],
) -> None:
    env, event_type, _ = event_module
    env = {
        **env,
        "CHOREO_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
        "CHOREO_KAFKA_REQUEST_TIMEOUT": "2s",
    }
    result = choreo("publish", event_type, "--data", '{"text": "x"}', env=env)
    assert result.returncode == 1
    assert "cannot reach Kafka" in result.stderr


@pytest.mark.engines("tansu", "kafka")
def test_run_marks_ready_beats_and_stops_cleanly_on_sigterm(
    kafka: KafkaSettings, tmp_path: Path
) -> None:
    ready = tmp_path / "ready"
    env = {
        **os.environ,
        "CHOREO_KAFKA_BOOTSTRAP": kafka.bootstrap,
        "CHOREO_DATA_DIR": str(tmp_path),
        "CHOREO_READY_FILE": str(ready),
        "CHOREO_EXAMPLE": "1",  # payments is the example domain's
    }
    process = subprocess.Popen(
        [CHOREO, "run", "payments"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        wait_until(ready.exists, timeout=60, what="payments to be ready")
        healthy = subprocess.run(
            [CHOREO, "health"], env=env, capture_output=True, text=True, check=False
        )
        assert healthy.returncode == 0, healthy.stderr
        first = ready.stat().st_mtime
        wait_until(lambda: ready.stat().st_mtime > first, timeout=20, what="a heartbeat")
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=30)
        assert process.returncode == 0, out
    finally:
        if process.poll() is None:
            process.kill()

    def stale() -> bool:
        result = subprocess.run(
            [CHOREO, "health", "--max-age", "1"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        return result.returncode == 1 and "last heartbeat" in result.stderr

    wait_until(stale, timeout=20, what="the stopped service to count as unhealthy")


def test_run_refuses_an_unknown_service() -> None:
    result = choreo("run", "teleporter")
    assert result.returncode == 2
    assert "no service named 'teleporter'" in result.stderr
    assert "payments" in result.stderr


@pytest.mark.engines("tansu", "kafka")
def test_topics_create_makes_every_declared_topic_and_its_dead_letter_topic(
    kafka: KafkaSettings,
) -> None:
    example = {"CHOREO_EXAMPLE": "1"}  # the example domain's topics, as in docker-compose.yml
    # The toolkit's own: the observer's lifecycle and approval topics, and the audit topic
    # every DLQ operation writes to.
    assert set(choreo("topics", "list").stdout.split()) == {
        "approvals",
        "approvals.dlq",
        "sagas",
        "sagas.dlq",
        AUDIT_TOPIC,
    }
    listed = choreo("topics", "list", env=example).stdout.split()
    assert {"orders", "orders.dlq", "payments", "shipping.dlq"} <= set(listed)
    created = choreo("topics", "create", "--bootstrap", kafka.bootstrap, env=example)
    assert created.returncode == 0, created.stderr
    import asyncio

    from tests.integration.kafka_io import end_offsets

    for topic in listed:
        assert asyncio.run(end_offsets(kafka.bootstrap, topic)), f"{topic} was not created"
