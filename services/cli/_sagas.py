"""``choreo sagas check|diagram``: saga specs as contracts, checked offline and drawn."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click

if TYPE_CHECKING:
    from choreokit.events import SagaSpec

MAX_SPEC_BYTES = 1_000_000
"""Largest YAML file of specs read (a spec file is a few kilobytes)."""


@click.group()
def sagas() -> None:
    """Check saga specs offline, or draw one as a Mermaid flowchart (docs/saga-observer.md)."""


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    raise SystemExit(1)


def _load(source: str | None) -> tuple[SagaSpec, ...]:
    """The specs of a YAML file, of a module (``pkg.mod`` or ``pkg.mod:ATTR``), or declared."""
    from choreokit.events import ConfigurationError, SagaSpec, sagas_from_yaml
    from choreokit.services.runtime import discovery

    try:
        if source is None:
            return discovery.declared_sagas()
        path = Path(source)
        if path.suffix in {".yaml", ".yml"} or path.exists():
            if not path.is_file():
                _fail(f"{source}: no such file")
            if path.stat().st_size > MAX_SPEC_BYTES:
                _fail(f"{source}: larger than {MAX_SPEC_BYTES} bytes; not a spec file")
            return sagas_from_yaml(path)
        found = discovery.load_object(source, "saga module")
    except ConfigurationError as exc:
        _fail(str(exc))
    if isinstance(found, SagaSpec):
        return (found,)
    if isinstance(found, (list, tuple)) and all(isinstance(s, SagaSpec) for s in found):
        return tuple(found)
    specs = tuple(v for v in vars(found).values() if isinstance(v, SagaSpec))
    if not specs:
        _fail(f"{source} declares no SagaSpec; name a YAML file, a module or module:ATTRIBUTE")
    return tuple({id(s): s for s in specs}.values())


_SOURCE = click.argument("source", required=False, metavar="[FILE|MODULE]")

_CHECK_HELP = """Check the saga specs of FILE (YAML) or MODULE (pkg.mod or pkg.mod:ATTR).

\b
Without FILE|MODULE, the project's declared sagas are checked. The event types
are checked against the declared events ([tool.choreokit] events, the
'choreokit.events' entry points, $CHOREO_EVENT_MODULES, --events, and whatever
MODULE imports). Each problem names the saga and the field; the exit code is 1
if there is any.

\b
Checks: unknown event types, ends and steps no path from the start reaches,
compensations that can never be required, step deadlines out of range.

\b
Example:
  choreo sagas check sagas/order.yaml --events shop.events
"""


@sagas.command(help=_CHECK_HELP)
@_SOURCE
@click.option(
    "--events",
    "event_modules",
    multiple=True,
    metavar="MODULE",
    help="A module that declares events (repeatable).",
)
def check(source: str | None, event_modules: tuple[str, ...]) -> None:
    """Check saga specs (see the command help)."""
    from choreokit.events import ConfigurationError, check_saga, default_registry
    from choreokit.services.runtime import discovery

    specs = _load(source)
    try:
        discovery.load_event_modules(event_modules)
    except ConfigurationError as exc:
        _fail(str(exc))
    if not specs:
        _fail("no saga specs declared; name a FILE or MODULE ([tool.choreokit] sagas lists them)")
    registry = default_registry if len(default_registry) else None
    if registry is None:
        click.echo("note: no events declared; event types not checked (use --events)", err=True)
    problems = [p for spec in specs for p in check_saga(spec, registry)]
    for problem in problems:
        click.echo(f"error: {problem}", err=True)
    if problems:
        raise SystemExit(1)
    names = ", ".join(s.name for s in specs)
    click.echo(f"{len(specs)} saga spec(s) ok: {names}")


@sagas.command()
@click.argument("name")
@click.option(
    "--spec",
    "source",
    metavar="FILE|MODULE",
    help="Where the saga is declared [default: the project's declared sagas].",
)
def diagram(name: str, source: str | None) -> None:
    """Print the saga NAME as a Mermaid flowchart (for docs: a ```mermaid block)."""
    from choreokit.events import saga_diagram

    specs = {s.name: s for s in _load(source)}
    spec = specs.get(name)
    if spec is None:
        known = ", ".join(sorted(specs)) or "none"
        _fail(f"no saga named {name[:64]!r} (known: {known})")
    click.echo(saga_diagram(spec), nl=False)
