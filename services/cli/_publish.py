"""``choreo publish``: validate one event against its schema and publish it."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from choreokit.services.cli._common import bootstrap_option, run_async


def _read_data(data: str) -> Any:
    if data == "@-":
        text = sys.stdin.read()
    elif data.startswith("@"):
        try:
            text = Path(data[1:]).read_text()
        except OSError as exc:
            raise click.BadParameter(f"cannot read {data[1:]}: {exc.strerror}") from None
    else:
        text = data
    try:
        return json.loads(text)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--data") from None


_HELP = """Validate one event of TYPE and publish it to its topic.

\b
Example:
  choreo publish order.placed --version 1 --data \\
    '{"order_id":"o-1","customer_id":"c-1","sku":"SKU-1","quantity":1,"unit_price_cents":999}'

Exits 2 when the type, version or payload is invalid (nothing is published).
"""


@click.command(help=_HELP)
@click.argument("event_type", metavar="TYPE")
@click.option(
    "--data",
    required=True,
    help="The payload: JSON text, @FILE, or @- for standard input.",
)
@click.option(
    "--version",
    "version",
    type=click.IntRange(min=1),
    default=None,
    help="Schema major version [default: the newest declared].",
)
@click.option("--correlation-id", default=None, help="Join this flow instead of starting one.")
@click.option("--causation-id", default=None, help="Id of the event that caused this one.")
@click.option("--source", default="/cli/choreo", show_default=True, help="CloudEvents source.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@bootstrap_option
def publish(
    event_type: str,
    data: str,
    version: int | None,
    correlation_id: str | None,
    causation_id: str | None,
    source: str,
    as_json: bool,
    bootstrap: str,
) -> None:
    """Validate one event and publish it (see the command help)."""
    from choreokit.events import (
        Service,
        UnknownEventTypeError,
        default_registry,
        describe_validation_error,
    )
    from choreokit.services.runtime.discovery import load_event_modules

    payload = _read_data(data)
    load_event_modules()
    try:
        model = (
            default_registry.model(event_type, version)
            if version
            else default_registry.latest(event_type)
        )
    except UnknownEventTypeError as exc:
        raise click.UsageError(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - unknown version: same answer, a usage error
        raise click.UsageError(str(exc)) from None
    try:
        event = model.model_validate(payload)
    except ValidationError as exc:
        info = model.event_info()
        click.echo(
            f"error: {info} is invalid: {describe_validation_error(exc, limit=20, model=model)}",
            err=True,
        )
        raise SystemExit(2) from None

    async def send() -> dict[str, Any]:
        from choreokit.events import KafkaSettings

        service = Service(
            "choreo-cli",
            source=source,
            settings=KafkaSettings(bootstrap=bootstrap),
            publishes=[model],
        )
        async with service:
            outbound = service.publisher.prepare(
                event, correlation_id=correlation_id, causation_id=causation_id
            )
            future = await service.publisher.send(outbound)
            meta = await future
        envelope = outbound.envelope
        return {
            "id": envelope.id,
            "type": envelope.type,
            "dataversion": envelope.dataversion,
            "correlationid": envelope.correlation_id,
            "causationid": envelope.causation_id,
            "topic": meta.topic,
            "partition": meta.partition,
            "offset": meta.offset,
        }

    result = run_async(send)
    if as_json:
        click.echo(json.dumps(result))
    else:
        click.echo(
            f"published {result['type']} v{result['dataversion']} id={result['id']} "
            f"correlation={result['correlationid']} to "
            f"{result['topic']}[{result['partition']}]@{result['offset']}"
        )
