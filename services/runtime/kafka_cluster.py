"""Apache Kafka (KRaft) for tests and local use: one node or a three-node cluster on loopback.

Every node is a combined broker and controller (``java -cp ... kafka.Kafka
server.properties``) with its own data folder, ports and log file. A node can
be stopped, killed, paused, resumed and restarted with its data from a test;
the cluster is ready once a metadata request lists every broker.
"""

from __future__ import annotations

import base64
import io
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

from aiokafka.protocol.metadata import MetadataRequest_v5

from choreokit.services.runtime.child_process import ChildProcess
from choreokit.services.runtime.embedded_broker import free_port, port_is_free, recv_exactly
from choreokit.services.runtime.kafka_artifacts import (
    KafkaArtifacts,
    KafkaRigError,
    resolve_artifacts,
)
from choreokit.services.runtime.kafka_security import (
    RigSecurity,
    RigTls,
    brokers_answering,
    client_settings,
    make_certificates,
    scram_arguments,
    server_properties,
)

if TYPE_CHECKING:
    from choreokit.events import KafkaSettings

CLUSTER_SIZES = (1, 3)
"""How many nodes a rig may have: one, or three controller voters."""

MAX_PORT = 65535

HEAP = "512m"
"""Most heap one node may use; three of them share a small machine."""

_LOG4J2 = """\
status = warn
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = STDOUT
logger.request.name = kafka.request.logger
logger.request.level = WARN
"""


def brokers_in_metadata(host: str, port: int, timeout: float = 2.0) -> set[int] | None:
    """Return the node ids of the brokers a Metadata request to ``host:port`` lists.

    ``None`` means that nothing answered (yet).
    """
    request = MetadataRequest_v5([], False)
    header = request.build_request_header(correlation_id=1, client_id="choreo-rig")
    message = header.encode() + request.encode()
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(struct.pack(">i", len(message)) + message)
            size = struct.unpack(">i", recv_exactly(sock, 4))[0]
            payload = io.BytesIO(recv_exactly(sock, size))
    except OSError:
        return None
    correlation_id = struct.unpack(">i", payload.read(4))[0]
    if correlation_id != 1:
        return None
    response = request.RESPONSE_TYPE.decode(payload)
    return {int(broker[0]) for broker in response.brokers}


def _cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding (Kafka's Uuid).

    Never one that starts with ``-``: the storage tool would read it as an option
    (``argument --cluster-id/-t: expected one argument``), one id in 64. Kafka's own
    ``Uuid.randomUuid`` draws again for the same reason.
    """
    while True:
        found = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not found.startswith("-"):
            return found


class KafkaNode:
    """One combined broker+controller of a :class:`KafkaCluster`.

    Built by the cluster; tests reach it as ``cluster.nodes[i]``.
    """

    def __init__(
        self,
        node_id: int,
        *,
        host: str,
        port: int,
        controller_port: int,
        directory: Path,
        artifacts: KafkaArtifacts,
        heap: str,
        launcher: ThreadPoolExecutor,
        internal_port: int | None = None,
        advertised: str | None = None,
    ) -> None:
        self.node_id = node_id
        self.host = host
        self.port = port
        self.controller_port = controller_port
        self.internal_port = internal_port
        """The inter-broker listener's port, when clients are sent elsewhere (a proxy)."""
        self.advertised = advertised or f"{host}:{port}"
        """The ``host:port`` this node tells clients to connect to."""
        self.directory = directory
        self.data = directory / "data"
        self.properties = directory / "server.properties"
        self.log_path = directory / "node.log"
        self._artifacts = artifacts
        self._heap = heap
        self._launcher = launcher
        self._child = ChildProcess(self.log_path)

    @property
    def bootstrap(self) -> str:
        """``host:port`` of this node's client listener."""
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The node's process id while it runs (also while it is paused)."""
        return self._child.pid if self._child.running else None

    @property
    def running(self) -> bool:
        """Whether the node's process is alive (paused counts as alive)."""
        return self.pid is not None

    def java_command(self, main: str, *args: str) -> list[str]:
        """The ``java`` command line that runs ``main`` on the broker's classpath."""
        return [
            self._artifacts.java,
            f"-Xmx{self._heap}",
            "-Xms64m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-XX:ActiveProcessorCount=2",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.directory / 'log4j2.properties'}",
            "-cp",
            self._artifacts.classpath_arg,
            main,
            *args,
        ]

    def format(self, cluster_id: str, extra: list[str] | None = None) -> None:
        """Format the node's KRaft storage (once, before its first start).

        ``extra`` are more arguments of the storage tool (``--add-scram ...``).

        Raises:
            KafkaRigError: The storage tool failed.
        """
        command = self.java_command(
            "kafka.tools.StorageTool",
            "format",
            "-t",
            cluster_id,
            "-c",
            str(self.properties),
            *(extra or []),
        )
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-20:])
            raise KafkaRigError(
                f"formatting node {self.node_id}'s storage in {self.data} failed (exit code "
                f"{result.returncode}):\n{tail}"
            )

    def launch(self) -> None:
        """Start the node's process (its data is kept from any earlier run).

        Raises:
            KafkaRigError: The node runs already, or one of its ports is taken.
        """
        if self.running:
            raise KafkaRigError(f"node {self.node_id} runs already (pid {self.pid})")
        ports = (self.port, self.controller_port, self.internal_port)
        for port in (p for p in ports if p is not None):
            if not port_is_free(self.host, port):
                raise KafkaRigError(
                    f"port {port} on {self.host} is already in use: is another broker running? "
                    "Stop it, or choose another port with --port"
                )
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "KAFKA_"))}
        # The cluster's launcher thread lives until the cluster is closed: a node started
        # from a passing thread would die with it (see ChildProcess.start).
        self._child.start(
            self.java_command("kafka.Kafka", str(self.properties)),
            env=env,
            cwd=self.directory,
            launcher=self._launcher,
        )

    def check_alive(self) -> None:
        """Raise if the node's process has exited, with the tail of its log.

        Raises:
            KafkaRigError: The node exited.
        """
        code = self._child.exited()
        if code is not None:
            raise KafkaRigError(
                f"Kafka node {self.node_id} exited with code {code}; the end of "
                f"{self.log_path}:\n{self.log_tail()}"
            )

    def log_tail(self, lines: int = 25) -> str:
        """The last ``lines`` lines of the node's log."""
        return self._child.log_tail(lines)

    def stop(self, timeout: timedelta = timedelta(seconds=30)) -> None:
        """Stop the node cleanly (SIGTERM; SIGKILL if it has not exited after ``timeout``)."""
        self._child.stop(timeout)

    def kill(self) -> None:
        """Kill the node (SIGKILL), as a crash or a pulled plug would: no clean shutdown."""
        self._child.kill()

    def pause(self) -> None:
        """Freeze the node (SIGSTOP): connections stay open, nothing is answered."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Let a paused node run again (SIGCONT)."""
        self._signal(signal.SIGCONT)

    def wait(self) -> int:
        """Block until the node's process exits; return its exit code."""
        if self._child.pid is None:
            raise KafkaRigError(f"node {self.node_id} is not running")
        return self._child.wait()

    def _signal(self, signum: signal.Signals) -> None:
        if self._child.pid is None:
            raise KafkaRigError(f"node {self.node_id} is not running; start it first")
        self._child.send(signum)


class KafkaCluster:
    """Apache Kafka in KRaft mode on loopback: ``nodes`` combined broker+controller processes.

    With three nodes every node is a controller voter, topics default to
    replication factor 3 with ``min.insync.replicas=2``, and so do the offsets
    and transaction-state topics. Data lives in ``directory`` (a fresh
    temporary folder by default, removed by :meth:`close`), so a restarted
    node keeps what it had.

    Args:
        nodes: 1 or 3.
        host: The loopback interface to listen on and advertise.
        port: The first node's client port (a free one if omitted); other ports are free ones.
        directory: Where the nodes' data, configuration and logs go.
        heap: ``-Xmx`` of each node.
        artifacts: Java and the classpath; resolved (and cached) if omitted.
        properties: Extra ``server.properties`` entries for every node.
        security: Run the (one) node on SASL_SSL with SCRAM users and ACLs enforced
            (:mod:`choreokit.services.runtime.kafka_security`); plaintext if omitted.
        advertised: The ``host:port`` each node advertises to clients, node by node (a
            TCP proxy in front of it, so that a fault test can cut clients off); the
            brokers then talk to each other on a listener of their own, which the
            proxy does not see. Each node advertises its own client port if omitted.

    Raises:
        KafkaRigError: ``nodes`` is not 1 or 3, ``security`` is asked of three nodes or
            together with ``advertised``, or ``advertised`` does not name one address
            per node.
    """

    def __init__(
        self,
        nodes: int = 1,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        directory: Path | None = None,
        heap: str = HEAP,
        artifacts: KafkaArtifacts | None = None,
        properties: dict[str, str] | None = None,
        security: RigSecurity | None = None,
        advertised: Sequence[str] | None = None,
    ) -> None:
        if nodes not in CLUSTER_SIZES:
            raise KafkaRigError(f"a Kafka rig has 1 or 3 nodes, not {nodes}")
        if security is not None and nodes != 1:
            raise KafkaRigError("a secure Kafka rig (security=...) has one node; drop security")
        if advertised is not None:
            if security is not None:
                raise KafkaRigError(
                    "a secure Kafka rig advertises its own listener; drop advertised=..."
                )
            if len(advertised) != nodes:
                raise KafkaRigError(
                    f"advertised= names {len(advertised)} address(es) for {nodes} node(s); "
                    "give one host:port per node"
                )
            for address in advertised:
                name, _, number = address.rpartition(":")
                if not name or not number.isdigit() or not 0 < int(number) <= MAX_PORT:
                    raise KafkaRigError(
                        f"advertised address {address!r} is not host:port (e.g. 127.0.0.1:9092)"
                    )
        self._advertised = list(advertised) if advertised is not None else None
        self.security = security
        self.tls: RigTls | None = None
        """The run's CA and broker certificate (secure rigs, once started)."""
        self.host = host
        self.size = nodes
        self._first_port = port
        self._owns_directory = directory is None
        self.directory = directory or Path(tempfile.mkdtemp(prefix="choreo-kafka-"))
        self._heap = heap
        self._artifacts = artifacts
        self._extra = dict(properties or {})
        self.nodes: list[KafkaNode] = []
        self.cluster_id = _cluster_id()
        self._launcher = ThreadPoolExecutor(1, thread_name_prefix="kafka-launcher")

    @property
    def bootstrap(self) -> str:
        """Comma-separated ``host:port`` of every node, for Kafka clients."""
        return ",".join(node.bootstrap for node in self.nodes)

    @property
    def pids(self) -> list[int | None]:
        """Each node's process id (``None`` for a node that is down)."""
        return [node.pid for node in self.nodes]

    def start(self, timeout: timedelta = timedelta(seconds=90)) -> None:
        """Write each node's configuration, format its storage, start it, wait until ready.

        Raises:
            KafkaRigError: Java or the jars are missing, a port is taken, a node
                exited, or the cluster was not ready within ``timeout``.
        """
        if self.nodes:
            raise KafkaRigError("this cluster was started already; restart() brings a node back")
        artifacts = self._artifacts or resolve_artifacts()
        self._artifacts = artifacts
        self.nodes = self._plan(artifacts)
        voters = ",".join(f"{n.node_id}@{n.host}:{n.controller_port}" for n in self.nodes)
        scram: list[str] = []
        if self.security is not None:
            self.tls = make_certificates(self.directory / "tls", self.host)
            scram = scram_arguments(self.security)
        for node in self.nodes:
            node.directory.mkdir(parents=True, exist_ok=True)
            (node.directory / "log4j2.properties").write_text(_LOG4J2)
            node.properties.write_text(self._server_properties(node, voters))
        with ThreadPoolExecutor(len(self.nodes)) as pool:
            list(pool.map(lambda n: n.format(self.cluster_id, scram), self.nodes))
        try:
            for node in self.nodes:
                node.launch()
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def wait_ready(self, timeout: timedelta = timedelta(seconds=90)) -> None:
        """Wait until every running node answers a metadata request listing every running broker.

        Raises:
            KafkaRigError: A node exited, or the cluster was not ready within ``timeout``.
        """
        deadline = time.monotonic() + timeout.total_seconds()
        while True:
            running = [node for node in self.nodes if node.running]
            for node in self.nodes:
                node.check_alive()
            want = {node.node_id for node in running}
            if running and all(self._brokers_seen_by(node) == want for node in running):
                return
            if time.monotonic() > deadline:
                tails = "\n".join(
                    f"--- node {n.node_id} ({n.log_path}):\n{n.log_tail(10)}" for n in running
                )
                raise KafkaRigError(
                    f"Apache Kafka at {self.bootstrap} did not list brokers {sorted(want)} within "
                    f"{timeout.total_seconds():.0f}s; the nodes' logs end with:\n{tails}"
                )
            time.sleep(0.1)  # polls the nodes until their metadata agrees

    def restart(self, *nodes: KafkaNode, timeout: timedelta = timedelta(seconds=90)) -> None:
        """Start stopped or killed nodes again on their old data; return once the cluster is whole.

        With no nodes named, every node that is down is started (a whole-cluster restart
        needs them all at once: a lone controller has no quorum).

        Raises:
            KafkaRigError: A node is running already, or the nodes did not rejoin within
                ``timeout``.
        """
        for node in nodes or [n for n in self.nodes if not n.running]:
            node.launch()
        self.wait_ready(timeout)

    def settings(self, user: str | None = None, **overrides: object) -> KafkaSettings:
        """Client settings for this rig: plaintext, or ``user``'s SASL_SSL (default: the admin).

        Raises:
            KafkaRigError: The rig is not started, or ``user`` is not one of its users.
        """
        from choreokit.events import KafkaSettings

        if not self.nodes:
            raise KafkaRigError("start the rig first")
        if self.security is None:
            return KafkaSettings.model_validate({"bootstrap": self.bootstrap, **overrides})
        assert self.tls is not None
        values = {"bootstrap": self.bootstrap, **overrides}
        return client_settings(self.security, self.tls, user or self.security.admin, **values)

    def _brokers_seen_by(self, node: KafkaNode) -> set[int] | None:
        if self.security is None:
            return brokers_in_metadata(node.host, node.port)
        return brokers_answering(self.settings(bootstrap=node.bootstrap))

    def stop(self) -> None:
        """Stop every node (SIGTERM in parallel); their data stays in :attr:`directory`."""
        running = [node for node in self.nodes if node.running]
        if running:
            with ThreadPoolExecutor(len(running)) as pool:
                list(pool.map(lambda n: n.stop(), running))

    def close(self) -> None:
        """Stop every node and remove the data folder if the cluster made it."""
        self.stop()
        self._launcher.shutdown()
        if self._owns_directory:
            shutil.rmtree(self.directory, ignore_errors=True)

    def _plan(self, artifacts: KafkaArtifacts) -> list[KafkaNode]:
        taken: set[int] = set()

        def fresh() -> int:
            while True:
                port = free_port(self.host)
                if port not in taken:
                    taken.add(port)
                    return port

        nodes = []
        for index in range(self.size):
            port = self._first_port if index == 0 and self._first_port else fresh()
            taken.add(port)
            proxied = self._advertised is not None
            nodes.append(
                KafkaNode(
                    index + 1,
                    host=self.host,
                    port=port,
                    controller_port=fresh(),
                    directory=self.directory / f"node-{index + 1}",
                    artifacts=artifacts,
                    heap=self._heap,
                    launcher=self._launcher,
                    internal_port=fresh() if proxied else None,
                    advertised=self._advertised[index] if self._advertised else None,
                )
            )
        return nodes

    def _server_properties(self, node: KafkaNode, voters: str) -> str:
        replicas = str(self.size)
        min_isr = "1" if self.size == 1 else "2"
        entries: dict[str, str] = {
            "process.roles": "broker,controller",
            "node.id": str(node.node_id),
            "controller.quorum.voters": voters,
            "listeners": f"PLAINTEXT://{node.host}:{node.port},CONTROLLER://{node.host}:"
            f"{node.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{node.host}:{node.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(node.data),
            "num.partitions": "4",
            "default.replication.factor": replicas,
            "min.insync.replicas": min_isr,
            "offsets.topic.replication.factor": replicas,
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": replicas,
            "transaction.state.log.min.isr": min_isr,
            "transaction.state.log.num.partitions": "10",
            "share.coordinator.state.topic.replication.factor": replicas,
            "share.coordinator.state.topic.min.isr": min_isr,
            # Fast starts and fast groups: no join delay, and the local profile's
            # 2 s session timeout is allowed (Kafka's default minimum is 6 s).
            "group.initial.rebalance.delay.ms": "0",
            "group.min.session.timeout.ms": "500",
            "num.network.threads": "2",
            "num.io.threads": "2",
            "num.recovery.threads.per.data.dir": "1",
            "background.threads": "2",
            "auto.create.topics.enable": "true",
        }
        if node.internal_port is not None:
            # Clients are sent to the advertised address (a proxy); the brokers replicate on
            # a listener of their own, so cutting the clients off leaves the cluster whole.
            entries.update(
                {
                    "listeners": f"PLAINTEXT://{node.host}:{node.port},INTERNAL://{node.host}:"
                    f"{node.internal_port},CONTROLLER://{node.host}:{node.controller_port}",
                    "advertised.listeners": f"PLAINTEXT://{node.advertised},INTERNAL://"
                    f"{node.host}:{node.internal_port}",
                    "inter.broker.listener.name": "INTERNAL",
                    "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,"
                    "INTERNAL:PLAINTEXT",
                }
            )
        if self.security is not None:
            assert self.tls is not None
            entries.update(
                server_properties(
                    self.security,
                    self.tls,
                    host=node.host,
                    port=node.port,
                    controller_port=node.controller_port,
                )
            )
        entries.update(self._extra)
        return "".join(f"{key}={value}\n" for key, value in entries.items())

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
