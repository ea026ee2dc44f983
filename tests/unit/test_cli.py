"""The command line's answers to bad input, without a broker."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from choreokit.services.cli import cli


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_help_lists_every_command(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["--help"])
    assert result.exit_code == 0
    for command in ("broker", "dev", "demo", "run", "publish", "tail", "schemas"):
        assert command in result.output


def test_publish_refuses_an_invalid_payload_with_its_fields(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["publish", "order.placed", "--data", '{"order_id": ""}'])
    assert result.exit_code == 2
    assert "order.placed v2 is invalid" in result.output
    assert "order_id: String should have at least 1 character [string_too_short]" in result.output
    assert "lines: Field required [missing]" in result.output


def test_publish_refuses_an_unknown_type(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["publish", "order.teleported", "--data", "{}"])
    assert result.exit_code == 2
    assert "no event type 'order.teleported'" in result.output
    assert "order.placed" in result.output


def test_publish_refuses_an_unknown_version(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["publish", "order.placed", "--version", "9", "--data", "{}"])
    assert result.exit_code == 2
    assert "no schema for order.placed v9 (known: 1, 2)" in result.output


def test_publish_refuses_data_that_is_not_json(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(cli, ["publish", "order.placed", "--data", "{nope"])
    assert result.exit_code == 2
    assert "not JSON" in result.output
    missing = tmp_path / "absent.json"
    result = runner.invoke(cli, ["publish", "order.placed", "--data", f"@{missing}"])
    assert result.exit_code == 2
    assert "cannot read" in result.output


def test_schemas_check_passes_on_the_committed_schemas(runner: CliRunner) -> None:
    root = Path(__file__).resolve().parents[2]
    result = runner.invoke(cli, ["schemas", "check", "--example", "--dir", str(root / "schemas")])
    assert result.exit_code == 0, result.output


def test_schemas_check_fails_on_a_tampered_copy(runner: CliRunner, tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    exported = runner.invoke(cli, ["schemas", "export", "--example", "--dir", str(tmp_path)])
    assert exported.exit_code == 0, exported.output
    target = tmp_path / "order.placed" / "v1.json"
    document = json.loads(target.read_text())
    document["properties"]["quantity"] = {"type": "string"}
    target.write_text(json.dumps(document))
    result = runner.invoke(cli, ["schemas", "check", "--example", "--dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "order.placed v1: field 'quantity' changed type" in result.output
    assert (root / "schemas" / "order.placed" / "v1.json").exists()
