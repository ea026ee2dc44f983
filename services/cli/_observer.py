"""``choreo observer-token create``: mint a token for the saga observer's API and UI."""

from __future__ import annotations

import json

import click


@click.group("observer-token")
def observer_token() -> None:
    """Manage the saga observer's access tokens (see docs/security.md)."""


_HELP = """Mint a token named NAME: print it once, and the entry for the token file.

\b
The token goes to its holder and is never stored; the entry holds its SHA-256
hash. Add the entry to the file named by CHOREO_OBSERVER_TOKENS_FILE and restart
the observer. A viewer reads flows and events; an operator may also replay dead
letters and approve or reject checkpoints (each such action is audited).

\b
Example:
  choreo observer-token create alice --role operator
"""


@observer_token.command(help=_HELP)
@click.argument("name")
@click.option(
    "--role",
    type=click.Choice(["viewer", "operator"]),
    default="viewer",
    show_default=True,
    help="What the token may do.",
)
@click.option("--json", "as_json", is_flag=True, help="Print {token, entry} as JSON.")
def create(name: str, role: str, as_json: bool) -> None:
    """Mint an observer token (see the command help)."""
    import yaml

    from choreokit.services.runtime.access import hash_token, mint_token

    token = mint_token()
    entry = {"name": name, "role": role, "hash": hash_token(token)}
    if as_json:
        click.echo(json.dumps({"token": token, "entry": entry}))
        return
    click.echo(f"token (give it to {name}; it is not shown again):\n  {token}\n")
    click.echo("entry (add it to the file CHOREO_OBSERVER_TOKENS_FILE names):")
    click.echo(yaml.safe_dump([entry], sort_keys=False).rstrip())
