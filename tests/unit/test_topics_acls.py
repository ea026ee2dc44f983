"""`choreo topics acls`: least privilege per service, derived from the services' declarations."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from choreokit.events.dlq import AUDIT_TOPIC
from choreokit.services.cli import cli
from choreokit.services.cli._acls import deployment_grants
from choreokit.services.gateway import mint_key
from choreokit.services.gateway._keys import entry_document
from choreokit.services.runtime.app import service_names
from choreokit.services.runtime.supervisor import Supervisor, load_service_env


@pytest.fixture(autouse=True)
def example(monkeypatch: pytest.MonkeyPatch) -> None:
    """The example domain's services are the deployment these tests derive ACLs for."""
    monkeypatch.setenv("CHOREO_EXAMPLE", "1")


def grants() -> dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]]:
    return {g.service: (g.reads, g.groups, g.writes) for g in deployment_grants()}


def test_each_domain_service_reads_what_it_consumes_and_writes_what_it_declares() -> None:
    found = grants()
    assert found["inventory"] == (("orders",), ("inventory",), ("inventory", "orders.dlq"))
    # payments also waits for approvals (and asks for them) on the approvals topic
    assert found["payments"] == (
        ("approvals", "inventory", "orders"),
        ("payments",),
        ("approvals", "approvals.dlq", "inventory.dlq", "orders.dlq", "payments"),
    )
    assert found["shipping"] == (
        ("orders", "payments"),
        ("shipping",),
        ("orchestrations", "orders.dlq", "payments.dlq", "shipping"),
    )
    # orders consumes the outcomes and writes only its own topic and the dead letters.
    reads, groups, writes = found["orders"]
    assert reads == ("inventory", "orders", "payments", "shipping")
    assert groups == ("orders",)
    assert "orders" in writes
    assert not {"inventory", "payments", "shipping", "sagas"} & set(writes)
    assert set(found) == set(service_names())


def test_the_observer_reads_everything_it_observes_and_writes_sagas_and_its_replays() -> None:
    reads, groups, writes = grants()["saga-observer"]
    assert {"orders", "orders.dlq", "payments", "sagas", "shipping.dlq", AUDIT_TOPIC} <= set(reads)
    assert groups == ("saga-observer",)
    # The replay button writes a record back to its topic and an audit record; never a .dlq.
    # approvals: operators' decisions at checkpoints
    assert set(writes) == {
        "approvals",
        "inventory",
        "orchestrations",
        "orders",
        "payments",
        "sagas",
        "shipping",
        AUDIT_TOPIC,
    }


def test_without_observer_replays_the_observer_writes_only_sagas_and_approvals() -> None:
    [observer] = deployment_grants(["saga-observer"], observer_replay=False)
    assert observer.writes == ("approvals", "sagas")
    result = CliRunner().invoke(
        cli, ["topics", "acls", "--json", "--service", "saga-observer", "--no-observer-replay"]
    )
    assert result.exit_code == 0, result.output
    written = {r["resource_name"] for r in json.loads(result.output) if r["operation"] == "WRITE"}
    assert written == {"approvals", "sagas"}


def test_the_topics_made_by_topics_create_include_the_dlq_audit_topic() -> None:
    result = CliRunner().invoke(cli, ["topics", "list"])
    assert result.exit_code == 0, result.output
    listed = result.output.split()
    assert AUDIT_TOPIC in listed
    assert {"orders", "orders.dlq"} <= set(listed)


def test_the_gateway_writes_what_its_keys_allow(monkeypatch: pytest.MonkeyPatch) -> None:
    assert grants()["gateway"][2] == (
        "approvals",
        "inventory",
        "orchestrations",
        "orders",
        "payments",
        "sagas",
        "shipping",
    )
    key = mint_key("partner", types=["order.*"]).entry
    monkeypatch.setenv("CHOREO_GATEWAY_KEYS", json.dumps([entry_document(key)]))
    reads, groups, writes = grants()["gateway"]
    assert (reads, groups, writes) == ((), (), ("orders",))


def test_the_command_prints_kafka_acls_commands_and_json() -> None:
    runner = CliRunner()
    result = runner.invoke(
        cli,
        ["topics", "acls", "--bootstrap", "kafka:9092", "--principal", "User:prod-{service}"],
    )
    assert result.exit_code == 0, result.output
    commands = [
        shlex.split(line) for line in result.output.splitlines() if line.startswith("kafka-acls")
    ]
    inventory = [c for c in commands if "User:prod-inventory" in c]
    assert len(inventory) == 2
    read, write = inventory
    assert read[read.index("--bootstrap-server") + 1] == "kafka:9092"
    assert read[read.index("--operation") + 1] == "Read"
    assert [read[i + 1] for i, a in enumerate(read) if a == "--topic"] == ["orders"]
    assert [read[i + 1] for i, a in enumerate(read) if a == "--group"] == ["inventory"]
    assert [write[i + 1] for i, a in enumerate(write) if a == "--operation"] == [
        "Write",
        "Describe",
    ]
    assert [write[i + 1] for i, a in enumerate(write) if a == "--topic"] == [
        "inventory",
        "orders.dlq",
    ]

    rules = json.loads(runner.invoke(cli, ["topics", "acls", "--json"]).output)
    assert {r["principal"] for r in rules} == {f"User:{s}" for s in service_names()}
    assert {r["operation"] for r in rules} == {"READ", "WRITE", "DESCRIBE"}
    assert {r["permission_type"] for r in rules} == {"ALLOW"}
    assert not [
        r for r in rules if r["principal"] == "User:inventory" and r["resource_name"] == "payments"
    ]


def test_the_principal_pattern_must_name_the_service() -> None:
    result = CliRunner().invoke(cli, ["topics", "acls", "--principal", "User:everyone"])
    assert result.exit_code == 2
    assert "{service}" in result.output


def test_dev_gives_each_service_its_own_environment_file(tmp_path: Path) -> None:
    (tmp_path / "orders.env").write_text(
        "CHOREO_KAFKA_SASL_USERNAME=orders\nCHOREO_KAFKA_SASL_PASSWORD='p w'\n"
    )
    (tmp_path / "payments.env").write_text("CHOREO_KAFKA_SASL_USERNAME=payments\n")
    pattern = str(tmp_path / "{service}.env")
    per_service = load_service_env(pattern, ["orders", "payments"])
    supervisor = Supervisor(
        services=["orders", "payments"],
        data_dir=tmp_path,
        bootstrap="k:1",
        env={"CHOREO_KAFKA_SASL_USERNAME": "shared"},
        service_env=per_service,
    )
    orders = supervisor._child_env("orders")
    assert orders["CHOREO_KAFKA_SASL_USERNAME"] == "orders"
    assert orders["CHOREO_KAFKA_SASL_PASSWORD"] == "p w"
    assert supervisor._child_env("payments")["CHOREO_KAFKA_SASL_USERNAME"] == "payments"
    with pytest.raises(FileNotFoundError, match="shipping"):
        load_service_env(pattern, ["orders", "shipping"])
    result = CliRunner().invoke(cli, ["dev", "--service-env", pattern, "--only", "shipping"])
    assert result.exit_code == 2
    assert "shipping.env" in result.output


def test_a_transactional_service_may_use_the_transactional_ids_of_its_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Only with CHOREO_KAFKA_TRANSACTIONS=on, and only ids prefixed with the service's name."""
    assert {g.service: g.transactional_ids for g in deployment_grants()}["inventory"] == ()
    monkeypatch.setenv("CHOREO_KAFKA_TRANSACTIONS", "on")
    [inventory] = deployment_grants(["inventory"])
    assert inventory.transactional_ids == ("inventory",)
    rules = [r.as_dict() for r in inventory.acls() if r.resource_type == "TRANSACTIONAL_ID"]
    assert {(r["resource_name"], r["pattern_type"], r["operation"]) for r in rules} == {
        ("inventory", "PREFIXED", "WRITE"),
        ("inventory", "PREFIXED", "DESCRIBE"),
    }
    [*_, command] = inventory.commands("kafka:9093", "admin.properties")
    assert shlex.split(command)[-6:] == [
        "--operation",
        "Describe",
        "--transactional-id",
        "inventory",
        "--resource-pattern-type",
        "prefixed",
    ]
