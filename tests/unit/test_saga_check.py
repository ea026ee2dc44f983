"""``choreo sagas check|diagram``: each offline check names its saga and field, broken specs
exit 1, the declared order saga passes, and docs/saga-observer.md's examples are real runs."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from choreokit.events import Registry, SagaSpec, SagaStep, check_saga, default_registry
from choreokit.services.cli import cli
from choreokit.services.example.contracts.saga import ORDER_SAGA

PAGE = Path(__file__).resolve().parents[2] / "docs" / "saga-observer.md"
EXAMPLE = re.compile(
    r"<!-- sagas-example: (?P<name>[\w-]+) -->\n```(?P<lang>\w+)\n(?P<code>.*?)\n```", re.S
)
EVENTS = "choreokit.services.example.contracts"


def examples() -> dict[str, str]:
    return {m["name"]: m["code"] for m in EXAMPLE.finditer(PAGE.read_text())}


def fields(spec: SagaSpec, registry: Registry | None = None) -> list[str]:
    return [p.field for p in check_saga(spec, registry)]


def test_the_order_saga_is_a_sound_contract() -> None:
    assert check_saga(ORDER_SAGA, default_registry) == []


def test_unknown_types_are_named_by_field() -> None:
    spec = SagaSpec(name="s", start="order.placed", success=("order.confirmd",))
    problems = check_saga(spec, default_registry)
    assert [p.field for p in problems] == ["success[0]"]
    assert "'order.confirmd' is not a declared event type" in str(problems[0])
    assert str(problems[0]).startswith("saga 's': success[0]: ")


def test_unreachable_ends_and_steps_and_compensations() -> None:
    spec = SagaSpec(
        name="s",
        start="a",
        success=("b",),
        failure=("f",),
        steps={"a": ("b",), "x": ("f",)},
        compensations={"y": "z"},
    )
    assert fields(spec) == ["failure[0]", "steps.x", "compensations.y"]


def test_a_compensation_without_failure_ends_can_never_be_required() -> None:
    spec = SagaSpec(name="s", start="a", success=("b",), compensations={"a": "c"})
    [problem] = check_saga(spec)
    assert problem.field == "compensations.a"
    assert "no failure end" in problem.message


def test_a_step_deadline_not_shorter_than_the_timeout_is_out_of_range() -> None:
    spec = SagaSpec.declare(
        "s",
        start="a",
        success=["b"],
        steps={"a": SagaStep(["b"], deadline=timedelta(seconds=60))},
        timeout=timedelta(seconds=60),
    )
    assert fields(spec) == ["steps.a.deadline"]


def test_a_spec_without_steps_is_not_checked_for_paths() -> None:
    assert check_saga(SagaSpec(name="s", start="a", success=("b",), failure=("c",))) == []


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_the_documented_broken_spec_fails_as_documented(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "refund.yaml").write_text(examples()["broken-spec"])
    command, *expected = examples()["broken-check"].splitlines()
    args = command.removeprefix("$ choreo ").split()
    result = runner.invoke(cli, args)
    assert result.exit_code == 1
    assert result.stderr.splitlines() == expected


def test_a_structurally_invalid_yaml_spec_names_the_field(
    runner: CliRunner, tmp_path: Path
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\nstart: a\nsuccess: [b]\ntimeout: -5s\n")
    result = runner.invoke(cli, ["sagas", "check", str(path)])
    assert result.exit_code == 1
    assert "saga bad is invalid: timeout" in result.stderr


def test_missing_file_and_module_without_specs_are_refused(
    runner: CliRunner, tmp_path: Path
) -> None:
    result = runner.invoke(cli, ["sagas", "check", str(tmp_path / "none.yaml")])
    assert (result.exit_code, "no such file" in result.stderr) == (1, True)
    result = runner.invoke(cli, ["sagas", "check", "choreokit.services.example.contracts.orders"])
    assert (result.exit_code, "declares no SagaSpec" in result.stderr) == (1, True)
    result = runner.invoke(cli, ["sagas", "check", "no_such_module_here"])
    assert (result.exit_code, "cannot import" in result.stderr) == (1, True)


def test_a_module_with_a_sound_spec_passes(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["sagas", "check", "choreokit.services.example.contracts.saga"])
    assert result.exit_code == 0, result.stderr
    assert "1 saga spec(s) ok: order" in result.stdout


def test_the_documented_diagram_is_what_the_command_prints(
    runner: CliRunner, tmp_path: Path
) -> None:
    path = tmp_path / "pay.yaml"
    path.write_text(examples()["diagram-spec"])
    result = runner.invoke(cli, ["sagas", "diagram", "pay", "--spec", str(path)])
    assert result.exit_code == 0, result.stderr
    assert result.stdout == examples()["diagram"] + "\n"
    unknown = runner.invoke(cli, ["sagas", "diagram", "nope", "--spec", str(path)])
    assert unknown.exit_code == 1
    assert "no saga named 'nope' (known: pay)" in unknown.stderr


def test_sagas_help_lists_both_commands(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["sagas", "--help"])
    assert result.exit_code == 0
    assert "check" in result.stdout
    assert "diagram" in result.stdout
