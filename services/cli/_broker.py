"""``choreo broker``: a broker in the foreground, the embedded one (Tansu) or Apache Kafka."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType

import click

from choreokit.events import EmbeddedBrokerError


@click.command()
@click.option(
    "--engine",
    type=click.Choice(["tansu", "kafka"]),
    default="tansu",
    show_default=True,
    help="tansu: the embedded broker (memory only, no JVM). kafka: Apache Kafka in KRaft "
    "mode, from the jars the rig resolves (Java and Maven, or CHOREO_KAFKA_HOME).",
)
@click.option(
    "--nodes",
    type=click.Choice(["1", "3"]),
    default="1",
    show_default=True,
    help="Apache Kafka only: one node, or a cluster of three (three controller voters, "
    "replication factor 3, min.insync.replicas 2).",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option(
    "--port",
    default=9092,
    show_default=True,
    type=click.IntRange(1, 65535),
    help="Client port (of the first node, for Kafka; the other ports are free ones).",
)
@click.option(
    "--log",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Tansu only: append the broker's own output to this file (default: discard).",
)
@click.option(
    "--data",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Apache Kafka only: keep the nodes' data, configuration and logs in this folder "
    "(default: a temporary folder, removed on exit).",
)
def broker(
    engine: str, nodes: str, host: str, port: int, log: Path | None, data: Path | None
) -> None:
    """Run a Kafka broker in the foreground until Ctrl-C or SIGTERM.

    The embedded broker (Tansu) loses everything when it stops and has no
    idempotent producer and no transactions; services detect that and turn
    idempotence off. Apache Kafka prints its bootstrap servers and each node's
    process id (to stop, kill, pause or resume from outside); stopping this
    command stops every node. See docs/broker.md.
    """
    stopping = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    if engine == "kafka":
        _run_kafka(int(nodes), host, port, data, stopping)
    else:
        _run_tansu(host, port, log, stopping)


def _run_tansu(host: str, port: int, log: Path | None, stopping: threading.Event) -> None:
    from choreokit.services.runtime import EmbeddedBroker

    embedded = EmbeddedBroker(host, port, log=log)
    try:
        embedded.start()
    except EmbeddedBrokerError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(1) from None
    click.echo(f"embedded broker listening on {embedded.bootstrap} (Ctrl-C stops it)", err=True)

    def watch() -> None:
        embedded.wait()
        stopping.set()

    exited = threading.Thread(target=watch, daemon=True)
    exited.start()
    stopping.wait()
    crashed = embedded.pid is not None and not exited.is_alive()
    embedded.stop()
    if crashed:
        click.echo("error: the embedded broker exited unexpectedly", err=True)
        raise SystemExit(1)
    click.echo("embedded broker stopped", err=True)


def _run_kafka(
    nodes: int, host: str, port: int, data: Path | None, stopping: threading.Event
) -> None:
    from choreokit.services.runtime import KafkaCluster, KafkaRigError

    cluster = KafkaCluster(nodes, host=host, port=port, directory=data)
    click.echo(f"starting Apache Kafka ({nodes} node{'s' if nodes > 1 else ''})...", err=True)
    try:
        cluster.start()
    except KafkaRigError as exc:
        cluster.close()
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(1) from None
    click.echo(f"bootstrap: {cluster.bootstrap}")
    for node in cluster.nodes:
        click.echo(f"node {node.node_id}: pid {node.pid}, {node.bootstrap}, log {node.log_path}")
    click.echo("Apache Kafka is ready (Ctrl-C stops every node)", err=True)

    # A node killed from outside (a fault test) is reported; the command ends when all are gone.
    def watch(index: int) -> None:
        node = cluster.nodes[index]
        code = node.wait()
        if not stopping.is_set():
            click.echo(f"node {node.node_id} exited with code {code}", err=True)
        if not any(n.running for n in cluster.nodes):
            stopping.set()

    for index in range(len(cluster.nodes)):
        threading.Thread(target=watch, args=(index,), daemon=True).start()
    stopping.wait()
    crashed = not any(node.running for node in cluster.nodes)
    cluster.close()
    if crashed:
        click.echo("error: every Kafka node has exited", err=True)
        raise SystemExit(1)
    click.echo("Apache Kafka stopped", err=True)
