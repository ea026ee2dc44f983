"""``choreo gateway-key create``: mint an API key for the HTTP gateway."""

from __future__ import annotations

import json

import click


@click.group("gateway-key")
def gateway_key() -> None:
    """Manage the HTTP gateway's API keys (see docs/gateway.md)."""


_HELP = """Mint an API key with id KEY_ID: print its secret token once, and its entry.

\b
The token ('ck_<id>.<secret>') goes to the caller and is never stored. The
entry holds only a salted digest of the secret; add it to the keys file
(CHOREO_GATEWAY_KEYS_FILE) or to CHOREO_GATEWAY_KEYS, and restart the gateway.

\b
Example:
  choreo gateway-key create acme --start order.placed --source '/partners/acme/*'

Give --type or --start at least once.
"""


@gateway_key.command(help=_HELP)
@click.argument("key_id")
@click.option(
    "--type",
    "types",
    multiple=True,
    help="An event type it may publish; repeat for more; 'order.*' matches a prefix.",
)
@click.option(
    "--start",
    "starts",
    multiple=True,
    help="An event type it may publish only to start a flow (no correlationid); repeat for "
    "more. A key with --start only can start flows but never continue, end or compensate one.",
)
@click.option(
    "--source",
    "sources",
    multiple=True,
    help="A CloudEvents source it may use; repeat for more; '/x/*' matches a prefix [any].",
)
@click.option(
    "--trusted",
    is_flag=True,
    help="A system of ours: its traceparent and correlation ids are taken as given.",
)
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), help="Requests per second.")
@click.option("--burst", type=click.IntRange(min=1), help="Requests at once before --rate applies.")
@click.option("--json", "as_json", is_flag=True, help="Print {token, entry} as JSON.")
def create(
    key_id: str,
    types: tuple[str, ...],
    starts: tuple[str, ...],
    sources: tuple[str, ...],
    trusted: bool,
    rate: float | None,
    burst: int | None,
    as_json: bool,
) -> None:
    """Mint an API key (see the command help)."""
    import yaml

    from choreokit.events import ConfigurationError
    from choreokit.services.gateway import entry_document, mint_key

    try:
        minted = mint_key(
            key_id,
            types=types,
            starts=starts,
            sources=sources or ("*",),
            trusted=trusted,
            rate=rate,
            burst=burst,
        )
    except ConfigurationError as exc:
        raise click.UsageError(str(exc)) from None
    entry = entry_document(minted.entry)
    if as_json:
        click.echo(json.dumps({"token": minted.token, "entry": entry}))
        return
    click.echo(f"token (give it to the caller; it is not shown again):\n  {minted.token}\n")
    click.echo("entry (add it under 'keys:' in the keys file):")
    click.echo(yaml.safe_dump([entry], sort_keys=False).rstrip())
