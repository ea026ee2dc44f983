"""``choreo schemas export|check``: the committed contract under ``schemas/``."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

if TYPE_CHECKING:
    from choreokit.events import Registry, Service

_DIR_OPTION = click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("schemas"),
    show_default=True,
    help="The schemas directory.",
)


_MAX_DOCUMENT = 16 * 1024 * 1024
"""Largest committed asyncapi.yaml read to name a contract's users."""

_MODULE_OPTION = click.option(
    "--module",
    "modules",
    multiple=True,
    metavar="MODULE",
    help="A module that declares events (repeatable) [default: the project's declaration].",
)
_EXAMPLE_OPTION = click.option(
    "--example",
    is_flag=True,
    help="The example domain's contract (choreokit.services.example), as in choreokit's repo.",
)


@click.group()
def schemas() -> None:
    """Export or check schemas/: a JSON Schema per event type and version, and asyncapi.yaml.

    The events are those of the modules named with --module, or else the
    project's declaration: [tool.choreokit] events in the working directory's
    pyproject.toml, the 'choreokit.events' entry points of the project's
    installed distribution, and $CHOREO_EVENT_MODULES. Only events declared in
    those modules (or their submodules) are written, even if they import others.
    """


@dataclass(frozen=True)
class _Contract:
    registry: Registry
    services: tuple[Service, ...]


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    raise SystemExit(2)


def _contract(modules: tuple[str, ...], example: bool) -> _Contract:
    """The events of ``modules`` (or the declared ones) and the services for asyncapi.yaml."""
    from choreokit.events import ConfigurationError, Registry, default_registry
    from choreokit.services.runtime import discovery

    if example and modules:
        _fail("--example and --module exclude each other: name the modules, or ask for the example")
    try:
        if example:
            names = tuple(discovery.EXAMPLE.events.values())
            services = {**discovery.EXAMPLE.services, **discovery.toolkit().services}
        else:
            declared = discovery.project()
            names = modules or (*declared.events.values(), *discovery.env_modules())
            services = dict(declared.services)
        if not names:
            _fail(
                "no event modules declared; pass --module MODULE, or list them as "
                '[tool.choreokit] events = ["MODULE"] in pyproject.toml'
            )
        _import_all(names)
    except ConfigurationError as exc:
        _fail(str(exc))
    scoped = Registry()
    for model in default_registry:
        if any(model.__module__ == m or model.__module__.startswith(f"{m}.") for m in names):
            scoped.register(model)
    return _Contract(scoped, tuple(_declared_services(services)))


def _import_all(names: tuple[str, ...]) -> None:
    from choreokit.events import ConfigurationError
    from choreokit.services.runtime import discovery

    for name in dict.fromkeys(names):
        try:
            discovery.import_module(name)
        except ImportError as exc:
            raise ConfigurationError(f"cannot import event module {name!r}: {exc}") from exc


def _declared_services(targets: dict[str, str]) -> list[Service]:
    """The event-layer services of the given factories, for the AsyncAPI operations.

    Each service's factory is called (nothing runs); a factory that cannot be
    built here is skipped with a note, and its operations are left out.
    """
    from choreokit.events import ChoreoError, ConfigurationError, Service
    from choreokit.services.runtime import discovery
    from choreokit.services.runtime.app import Runtime

    found: list[Service] = []
    with tempfile.TemporaryDirectory() as scratch:
        for name, target in sorted(targets.items()):
            try:
                factory = discovery.load_object(target, "service factory")
                if not callable(factory):
                    raise ConfigurationError(f"{target} is not callable")
                app = factory(Runtime(name=name, data_dir=Path(scratch)))
            except (ChoreoError, ImportError, ValueError) as exc:
                click.echo(f"note: service {name} left out of asyncapi.yaml ({exc})", err=True)
                continue
            found.extend(s for s in getattr(app, "services", ()) if isinstance(s, Service))
    return found


@schemas.command()
@_DIR_OPTION
@_MODULE_OPTION
@_EXAMPLE_OPTION
@click.option("--force", is_flag=True, help="Overwrite committed versions even if incompatible.")
def export(directory: Path, modules: tuple[str, ...], example: bool, force: bool) -> None:
    """Write schemas/<type>/v<N>.json for every declared event version, and asyncapi.yaml."""
    from choreokit.events import ASYNCAPI_FILE, export_asyncapi, export_schemas

    contract = _contract(modules, example)
    registry = contract.registry
    written, refused = export_schemas(registry, directory, force=force)
    if not refused and export_asyncapi(registry, contract.services, directory):
        written.append(ASYNCAPI_FILE)
    for rel in written:
        click.echo(f"wrote {directory / rel}")
    for problem in refused:
        click.echo(f"error: {directory / problem.path}: {problem.message}", err=True)
    if not written and not refused:
        click.echo(f"{directory}: up to date ({len(registry)} schemas)")
    if refused:
        raise SystemExit(1)


def _documents(contract: _Contract, directory: Path) -> list[dict[str, Any]]:
    """The AsyncAPI documents that say who uses what: the committed one, and the declared one."""
    import yaml

    from choreokit.events import ASYNCAPI_FILE, asyncapi_document

    found = [asyncapi_document(contract.registry, contract.services)]
    committed = directory / ASYNCAPI_FILE
    try:
        if committed.stat().st_size <= _MAX_DOCUMENT:
            loaded = yaml.safe_load(committed.read_text(encoding="utf-8"))
            if isinstance(loaded, dict):
                found.append(loaded)
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        pass  # check_asyncapi already says what is wrong with it
    return found


@schemas.command()
@_DIR_OPTION
@_MODULE_OPTION
@_EXAMPLE_OPTION
def check(directory: Path, modules: tuple[str, ...], example: bool) -> None:
    """Fail if committed schemas are stale, missing, or were changed incompatibly.

    For an incompatible change, the services that publish and that handle the
    type and version are named (from the declared services and the committed
    asyncapi.yaml).
    """
    from choreokit.events import check_asyncapi, check_schemas, contract_users

    contract = _contract(modules, example)
    registry = contract.registry
    problems = check_schemas(registry, directory)
    problems += check_asyncapi(registry, contract.services, directory)
    documents = _documents(contract, directory) if any(p.incompatible for p in problems) else []
    named: set[Path] = set()
    for problem in problems:
        click.echo(f"error: {directory / problem.path}: {problem.message}", err=True)
        if problem.incompatible and problem.path not in named:
            named.add(problem.path)
            event_type, version = problem.path.parent.name, int(problem.path.stem[1:])
            users = contract_users(documents, event_type, version)
            click.echo(f"  {event_type} v{version} is {users}", err=True)
    if problems:
        raise SystemExit(1)
    click.echo(f"{directory}: {len(registry)} schemas and asyncapi.yaml match the declared events")
