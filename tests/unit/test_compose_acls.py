"""The compose ``acls`` job's stand-in (tests/rig/kafka_acls.py) reads the job as it runs.

The e2e deployment test applies, in the job's place, the rules of the ``kafka-acls.sh``
commands the ``topics`` job writes; these pin that reading those commands gives exactly the
rules ``choreo topics acls --json`` lists, and that a command the job would not run is refused.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from choreokit.services.cli import cli
from choreokit.services.runtime.discovery import EXAMPLE_ENV
from tests.rig.kafka_acls import AclScriptError, parse_commands, read_applier

ROOT = Path(__file__).resolve().parents[2]
BOOTSTRAP = "kafka:9092"
CONFIG = "/tmp/admin.properties"  # inside the Kafka container


def choreo(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_the_printed_commands_grant_what_the_json_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(EXAMPLE_ENV, "1")
    script = choreo("topics", "acls", "--bootstrap", BOOTSTRAP, "--command-config", CONFIG)
    listed: list[dict[str, str]] = json.loads(choreo("topics", "acls", "--json"))
    rules = parse_commands(script, bootstrap=BOOTSTRAP, command_config=CONFIG)
    key = lambda rule: tuple(sorted(rule.items()))  # noqa: E731 - a sort key
    assert sorted(rules, key=key) == sorted(listed, key=key)
    assert {rule["principal"] for rule in rules} >= {"User:orders", "User:saga-observer"}


def test_the_compose_job_writes_the_admin_properties_then_runs_the_topics_job_script() -> None:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    (entrypoint,) = services["acls"]["entrypoint"]
    applier = ROOT / "deploy/kafka/secure" / Path(entrypoint).name
    written, runs = read_applier(applier.read_text())
    assert written == CONFIG
    assert f"--command-config {written}" in " ".join(services["topics"]["command"])
    assert runs.startswith("/acls/")


@pytest.mark.parametrize(
    ("line", "refused"),
    [
        (f"kafka-acls.sh --bootstrap-server other:9092 --command-config {CONFIG} --add "
         "--allow-principal User:a --operation Read --topic t", "--bootstrap-server"),
        ("kafka-acls.sh --bootstrap-server kafka:9092 --command-config admin.properties --add "
         "--allow-principal User:a --operation Read --topic t", "--command-config"),
        (f"kafka-acls.sh --bootstrap-server kafka:9092 --command-config {CONFIG} --remove "
         "--allow-principal User:a --operation Read --topic t", "--remove"),
        (f"kafka-acls.sh --bootstrap-server kafka:9092 --command-config {CONFIG} --add "
         "--allow-principal User:a --topic t", "needs a principal, an operation"),
        ("kafka-topics.sh --list", "is not kafka-acls.sh"),
    ],
)  # fmt: skip
def test_a_command_the_job_would_not_run_is_refused(line: str, refused: str) -> None:
    with pytest.raises(AclScriptError, match=refused):
        parse_commands(f"#!/bin/sh\nset -e\n{line}\n", bootstrap=BOOTSTRAP, command_config=CONFIG)


def test_an_applier_doing_anything_else_is_refused() -> None:
    with pytest.raises(AclScriptError, match="does not know what"):
        read_applier("set -eu\nrm -rf /acls\n")
