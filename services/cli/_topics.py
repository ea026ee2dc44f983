"""``choreo topics``: the topics the declared events live on, and their dead-letter topics."""

from __future__ import annotations

import click

from choreokit.services.cli._common import bootstrap_option, run_async


def declared_topics() -> list[str]:
    """Every topic of a declared event type, each with its dead-letter topic."""
    from choreokit.events import dead_letter_topic, default_registry
    from choreokit.services.runtime.discovery import load_event_modules

    load_event_modules()
    topics = {default_registry.topic(t) for t in default_registry.types()}
    return sorted(topics | {dead_letter_topic(t) for t in topics})


@click.group()
def topics() -> None:
    """List or create the topics of the declared events (with their .dlq topics)."""


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
