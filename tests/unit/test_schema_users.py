"""``choreo schemas check`` names, for an incompatible change, the services that publish and
that handle the type and version: from the declared services and the committed AsyncAPI."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from click.testing import CliRunner

from choreokit.events import ContractUsers, contract_users
from choreokit.services.cli import cli

DOC = Path(__file__).resolve().parents[2] / "docs" / "schemas.md"


def exported(tmp_path: Path) -> CliRunner:
    runner = CliRunner()
    result = runner.invoke(cli, ["schemas", "export", "--example", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    return runner


def test_an_incompatible_change_names_its_publishers_and_handlers(tmp_path: Path) -> None:
    runner = exported(tmp_path)
    target = tmp_path / "payment.authorized" / "v1.json"
    document = json.loads(target.read_text())
    document["properties"]["amount_cents"] = {"type": "string"}
    target.write_text(json.dumps(document))
    result = runner.invoke(cli, ["schemas", "check", "--example", "--dir", str(tmp_path)])
    assert result.exit_code == 1
    # docs/schemas.md shows this answer, with the repository's schemas/ as the directory.
    documented = DOC.read_text().split("named too:\n\n```\n", 1)[1].split("\n```", 1)[0]
    assert result.stderr.replace(f"{tmp_path}/", "schemas/").splitlines() == documented.splitlines()


def test_users_only_the_committed_document_knows_are_named(tmp_path: Path) -> None:
    """A service whose code is not at hand (another team's, another language) is still named."""
    runner = exported(tmp_path)
    asyncapi = tmp_path / "asyncapi.yaml"
    document = yaml.safe_load(asyncapi.read_text())
    document["operations"]["billing.receive.payment.authorized"] = {
        "action": "receive",
        "channel": {"$ref": "#/channels/payments"},
        "messages": [{"$ref": "#/channels/payments/messages/payment.authorized.v1"}],
        "tags": [{"name": "service:billing"}],
    }
    asyncapi.write_text(yaml.safe_dump(document))
    target = tmp_path / "payment.authorized" / "v1.json"
    schema = json.loads(target.read_text())
    schema["required"] = [*schema["required"], "note"]
    schema["properties"]["note"] = {"type": "string"}
    target.write_text(json.dumps(schema))
    result = runner.invoke(cli, ["schemas", "check", "--example", "--dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "handled by billing, shipping" in result.stderr


def test_users_of_a_version_nobody_declares() -> None:
    users = contract_users([{"operations": {"x": "not an operation"}}, {}], "a.b", 1)
    assert users == ContractUsers((), ())
    assert str(users) == "published by no declared service; handled by no declared service"


def test_a_handler_of_a_later_version_handles_the_older_one_upcast() -> None:
    document = {
        "operations": {
            "svc.receive.a.b": {
                "action": "receive",
                "messages": [
                    {"$ref": "#/channels/t/messages/a.b.v1"},
                    {"$ref": "#/channels/t/messages/a.b.v2"},
                ],
            },
            "pub.send.a.b.v2": {
                "action": "send",
                "messages": [{"$ref": "#/channels/t/messages/a.b.v2"}],
            },
        }
    }
    assert contract_users([document], "a.b", 1) == ContractUsers((), ("svc",))
    assert contract_users([document], "a.b", 2) == ContractUsers(("pub",), ("svc",))
