"""``choreo topics``: the topics the declared events live on, and their dead-letter topics."""

from __future__ import annotations

import click

from choreokit.services.cli._common import bootstrap_option, run_async


def declared_topics() -> list[str]:
    """Every topic of a declared event type, its dead-letter topic, and the DLQ audit topic."""
    from choreokit.events import dead_letter_topic, default_registry
    from choreokit.events.dlq import AUDIT_TOPIC
    from choreokit.services.runtime.discovery import load_event_modules

    load_event_modules()
    topics = {default_registry.topic(t) for t in default_registry.types()}
    return sorted(topics | {dead_letter_topic(t) for t in topics} | {AUDIT_TOPIC})


@click.group()
def topics() -> None:
    """List or create the declared events' topics (with their .dlq topics and the audit topic)."""


@topics.command(name="list")
def list_topics() -> None:
    """Print the topics, one per line."""
    for topic in declared_topics():
        click.echo(topic)


@topics.command()
@bootstrap_option
def create(bootstrap: str) -> None:
    """Create the topics that do not exist yet.

    Partitions and replication come from CHOREO_KAFKA_TOPIC_PARTITIONS and
    CHOREO_KAFKA_TOPIC_REPLICATION. What exists is left as it is.
    """
    from choreokit.events import KafkaSettings, ensure_topics

    wanted = declared_topics()

    async def go() -> None:
        await ensure_topics(KafkaSettings(bootstrap=bootstrap), wanted)

    run_async(go)
    click.echo(f"{len(wanted)} topics present")


@topics.command(
    epilog="""\b
Example (every service's principal named like its SCRAM user, applied as an admin):
  choreo topics acls --bootstrap kafka:9093 --command-config /etc/kafka/admin.properties > acls.sh
  sh acls.sh
  choreo topics acls --json --principal 'User:prod-{service}'
"""
)
@bootstrap_option
@click.option(
    "--principal",
    default="User:{service}",
    show_default=True,
    help="Principal of each service; {service} is replaced by the service's name.",
)
@click.option(
    "--command-config",
    default="admin.properties",
    show_default=True,
    help="The admin's client properties file the printed kafka-acls commands pass.",
)
@click.option(
    "--service",
    "only",
    multiple=True,
    help="Only this service (repeatable; default: every installed service).",
)
@click.option(
    "--observer-replay/--no-observer-replay",
    default=True,
    show_default=True,
    help="Let the saga observer write what its replay button writes "
    "(the event topics it observes and the DLQ audit topic).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the ACL rules as a JSON list.")
def acls(
    bootstrap: str,
    principal: str,
    command_config: str,
    only: tuple[str, ...],
    observer_replay: bool,
    as_json: bool,
) -> None:
    """Print the ACLs the services need: least privilege per service principal.

    Each service may READ the topics it consumes and its consumer group, and
    WRITE (and DESCRIBE) only the topics of the events it declares in
    publishes= and the .dlq topics of what it consumes; the saga observer
    reads every topic it observes and writes sagas (and, for its replay
    button, the event topics and the DLQ audit topic); the gateway writes the topics of the
    types its API keys (CHOREO_GATEWAY_KEYS, _KEYS_FILE) may publish. The
    output is kafka-acls commands to run as an admin, or JSON with --json.
    """
    import json

    from choreokit.events import ChoreoError
    from choreokit.services.cli._acls import deployment_grants

    if "{service}" not in principal:
        raise click.UsageError("--principal must contain {service}, e.g. 'User:{service}'")
    try:
        grants = deployment_grants(list(only) or None, principal, observer_replay=observer_replay)
    except ChoreoError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from None
    if as_json:
        rules = [rule.as_dict() for grant in grants for rule in grant.acls()]
        click.echo(json.dumps(rules, indent=2))
        return
    click.echo(
        "#!/bin/sh\n# ACLs of the choreokit services ('choreo topics acls'); run as an admin."
    )
    click.echo("set -e")
    for grant in grants:
        click.echo(f"# {grant.service}")
        for line in grant.commands(bootstrap, command_config):
            click.echo(line)
