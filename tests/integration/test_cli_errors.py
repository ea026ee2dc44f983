"""The CLI as a newcomer meets it: with nothing listening, every command answers in one line.

Every command of the ``choreo`` group is found by walking the group, so a new
command is covered without being listed here: unless it is listed below, it
is run with no arguments against a broker address nothing listens on, and must
fail with one ``error:`` line on stderr, a non-zero exit and no traceback.
"""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from aiokafka import AIOKafkaProducer

from choreokit.events import KafkaSettings, client_options, wire
from choreokit.services.cli import cli
from choreokit.services.runtime import free_port
from tests.integration.test_cli import choreo

pytestmark = pytest.mark.integration

Command = tuple[str, ...]


def leaf_commands(group: click.Group, path: Command = ()) -> Iterator[Command]:
    """Every runnable command under ``group``, as the words that name it."""
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from leaf_commands(command, (*path, name))
        else:
            yield (*path, name)


COMMANDS = list(leaf_commands(cli))

# Arguments that make a command reach for the broker (or the order intake) at once.
# UNREACHABLE stands for the address nothing listens on; TMP for a fresh directory.
BROKER_ARGS: dict[Command, list[str]] = {
    ("dev",): ["--bootstrap", "UNREACHABLE", "--data-dir", "TMP/dev"],
    ("demo",): [
        "--bootstrap",
        "UNREACHABLE",
        "--orders-url",
        "http://UNREACHABLE",
        "--timeout",
        "5",
    ],
    ("run",): ["inventory"],
    ("publish",): ["stock.released", "--data", '{"order_id": "o1", "reservation_id": "r1"}'],
    ("tail",): ["--max", "1"],
    ("dlq", "purge"): ["some-dead-letter", "--reason", "newcomer"],
    ("dlq", "replay"): ["some-dead-letter"],
    ("dlq", "show"): ["some-dead-letter"],
}

# Commands that never talk to a broker, with arguments that make them do their work.
OFFLINE_ARGS: dict[Command, list[str]] = {
    # The suite starts brokers of its own; offline, it renders the committed results.
    ("bench",): [
        "--from-json",
        str(Path(__file__).resolve().parents[2] / "docs" / "bench" / "results.json"),
        "--write-docs",
        "--docs",
        "TMP/benchmarks.md",
    ],
    ("gateway-key", "create"): ["newcomer", "--type", "order.*"],
    ("observer-token", "create"): ["newcomer"],
    ("sagas", "check"): [],
    ("sagas", "diagram"): ["order"],
    ("schemas", "check"): ["--example"],
    ("schemas", "export"): ["--example", "--dir", "TMP/schemas"],
    ("topics", "list"): [],
    ("topics", "acls"): [],
}

# Commands that run a service: their stderr is the service's log, which ends in the error.
LOGGING = {("run",)}


def assert_one_line_error(result: subprocess.CompletedProcess[str], *, logs: bool = False) -> str:
    """Non-zero exit, no traceback, and the error in one ``error:`` line (the last, with logs)."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    if logs:
        assert lines[-1] == errors[0], result.stderr
    else:
        assert lines == errors, result.stderr
    return errors[0]


def _substituted(args: list[str], unreachable: str, tmp: Path) -> list[str]:
    return [a.replace("UNREACHABLE", unreachable).replace("TMP", str(tmp)) for a in args]


def test_every_command_is_known_to_this_test_or_reaches_for_the_broker() -> None:
    """The walk finds the commands; a listed command that no longer exists is caught."""
    assert ("tail",) in COMMANDS
    assert ("topics", "create") in COMMANDS
    stale = (set(BROKER_ARGS) | set(OFFLINE_ARGS) | {("broker",), ("health",)}) - set(COMMANDS)
    assert not stale, f"listed here but not a command any more: {sorted(stale)}"


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_answers_an_unreachable_broker_in_one_line(
    command: Command, tmp_path: Path
) -> None:
    port = free_port()
    unreachable = f"127.0.0.1:{port}"
    env = {
        "CHOREO_KAFKA_BOOTSTRAP": unreachable,
        "CHOREO_KAFKA_REQUEST_TIMEOUT": "2s",
        "CHOREO_DATA_DIR": str(tmp_path / "data"),
        "CHOREO_EXAMPLE": "1",  # the newcomer runs the example's services and events
    }
    if command == ("broker",):
        # The embedded broker itself: its port is taken by something that is not a broker.
        with socket.socket() as holder:
            holder.bind(("127.0.0.1", 0))
            holder.listen()
            taken = holder.getsockname()[1]
            result = choreo("broker", "--port", str(taken), env=env)
        assert "--port" in assert_one_line_error(result)
        return
    if command == ("health",):
        # A container healthcheck: no service has started, so it is unhealthy.
        result = choreo("health", env={**env, "CHOREO_READY_FILE": str(tmp_path / "ready")})
        assert result.returncode == 1
        assert result.stderr.strip().splitlines() == ["unhealthy: not up yet"]
        return
    if command in OFFLINE_ARGS:
        result = choreo(
            *command, *_substituted(OFFLINE_ARGS[command], unreachable, tmp_path), env=env
        )
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr
        return
    args = _substituted(BROKER_ARGS.get(command, []), unreachable, tmp_path)
    result = choreo(*command, *args, env=env)
    line = assert_one_line_error(result, logs=command in LOGGING)
    assert unreachable in line, line


def test_demo_says_when_the_order_intake_is_unreachable(kafka: KafkaSettings) -> None:
    env = {"CHOREO_KAFKA_BOOTSTRAP": kafka.bootstrap, "CHOREO_EXAMPLE": "1"}
    created = choreo("topics", "create", env=env)
    assert created.returncode == 0, created.stderr
    intake = f"http://127.0.0.1:{free_port()}"
    result = choreo(
        "demo",
        "--bootstrap",
        kafka.bootstrap,
        "--orders-url",
        intake,
        "--orders",
        "1",
        "--timeout",
        "5",
        env=env,
    )
    line = assert_one_line_error(result)
    assert f"cannot reach the order intake at {intake}" in line


def test_the_demo_summary_names_the_broker_it_ran_on() -> None:
    from choreokit.services.example.demo.report import Summary

    summary = Summary(
        orders=1,
        seed=1,
        by_kind={},
        outcomes={"completed": 1},
        versions={"v2": 1},
        unexplained=[],
        durations_ms={},
        events=5,
        seconds=1.0,
        urls={"saga-observer": "http://127.0.0.1:8080"},
        bootstrap="127.0.0.1:39092",
    )
    text = summary.render()
    assert "kafka           127.0.0.1:39092" in text
    assert "choreo tail --from-beginning --bootstrap 127.0.0.1:39092" in text
    assert summary.as_dict()["bootstrap"] == "127.0.0.1:39092"


async def test_tail_of_a_dead_letter_topic_shows_why_the_record_failed(
    kafka: KafkaSettings,
) -> None:
    topic = f"orders-{free_port()}.dlq"
    headers = [
        (wire.H_ERROR_TYPE, b"InvalidPayloadError"),
        (wire.H_ERROR_MESSAGE, b"order.placed v2 is invalid: lines: Field required"),
        (wire.H_ORIGINAL_TOPIC, b"orders"),
        (wire.H_ORIGINAL_PARTITION, b"3"),
        (wire.H_ORIGINAL_OFFSET, b"41"),
        (wire.H_CONSUMER_GROUP, b"inventory"),
        (wire.H_ATTEMPTS, b"1"),
    ]
    producer = AIOKafkaProducer(**client_options(kafka))
    await producer.start()
    try:
        await producer.send_and_wait(topic, b'{"not": "an event"}', headers=headers)
    finally:
        await producer.stop()
    env = {"CHOREO_KAFKA_BOOTSTRAP": kafka.bootstrap}
    shown = choreo("tail", topic, "--from-beginning", "--max", "1", env=env)
    assert shown.returncode == 0, shown.stderr
    assert (
        "  dead letter: InvalidPayloadError: order.placed v2 is invalid: lines: Field required "
        "(from orders[3]@41, group inventory, 1 attempts)"
    ) in shown.stdout.splitlines()
    as_json = choreo("tail", topic, "--from-beginning", "--max", "1", "--json", env=env)
    record = json.loads(as_json.stdout)
    assert record["headers"][wire.H_ERROR_TYPE] == "InvalidPayloadError"


def test_a_misspelt_service_variable_stops_the_service_in_one_line(tmp_path: Path) -> None:
    """``choreo run`` refuses an unknown variable of the service's prefix before it connects,
    naming the variable it most likely meant (docs/services.md, "Settings")."""
    env = {
        "CHOREO_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
        "CHOREO_DATA_DIR": str(tmp_path / "data"),
        "CHOREO_METRICS_PORT": "off",
        "CHOREO_OBSERVER_TOKNES_FILE": str(tmp_path / "tokens.yaml"),
    }
    result = choreo("run", "saga-observer", env=env)
    line = assert_one_line_error(result, logs=True)
    assert line.startswith("error: saga-observer: unknown variable CHOREO_OBSERVER_TOKNES_FILE")
    assert "(did you mean CHOREO_OBSERVER_TOKENS_FILE?)" in line
