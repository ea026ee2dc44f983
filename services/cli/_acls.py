"""The Kafka ACLs a deployment needs, derived from what its services declare.

Least privilege per service principal:

* a service may READ the topics it consumes and its consumer group;
* it may WRITE (and DESCRIBE) the topics of the events it declares in
  ``publishes=`` and the ``.dlq`` topics of the topics it consumes;
* the saga observer READs every declared topic its pattern matches (``.dlq``
  topics and the DLQ audit topic included) and its group, and WRITEs the
  ``sagas`` topic; for its replay button (an operator's action, audited) it
  also WRITEs the event topics it observes and the audit topic, unless the
  deployment turns replays from the observer off (``--no-observer-replay``:
  then replays are made with ``choreo dlq replay`` as an admin);
* the gateway WRITEs the topics of the event types its API keys may publish
  (every declared type when no keys are configured where the command runs).

Nothing else: no CREATE (topics are made by ``choreo topics create`` as an
admin), no cluster operations (an idempotent producer needs WRITE on some
topic only, KIP-679).
"""

from __future__ import annotations

import re
import shlex
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from choreokit.events import ChoreoError, Service, dead_letter_topic, default_registry
from choreokit.events.wire import DLQ_SUFFIX

DEFAULT_PRINCIPAL = "User:{service}"
"""How a service's principal is named unless told otherwise."""


@dataclass(frozen=True, order=True)
class Acl:
    """One ALLOW rule: ``principal`` may ``operation`` the ``resource_type`` named ``name``."""

    principal: str
    resource_type: str
    """``TOPIC`` or ``GROUP``."""
    name: str
    operation: str
    """``READ``, ``WRITE`` or ``DESCRIBE``."""
    pattern_type: str = "LITERAL"
    host: str = "*"
    permission: str = "ALLOW"

    def as_dict(self) -> dict[str, str]:
        """The rule as JSON-ready fields (Kafka's names for them)."""
        return {
            "principal": self.principal,
            "host": self.host,
            "operation": self.operation,
            "permission_type": self.permission,
            "resource_type": self.resource_type,
            "resource_name": self.name,
            "pattern_type": self.pattern_type,
        }


@dataclass(frozen=True)
class Grant:
    """What one service's principal may do."""

    service: str
    principal: str
    reads: tuple[str, ...]
    groups: tuple[str, ...]
    writes: tuple[str, ...]

    def acls(self) -> list[Acl]:
        """The grant as ACL rules."""
        rules = [Acl(self.principal, "TOPIC", t, "READ") for t in self.reads]
        rules += [Acl(self.principal, "GROUP", g, "READ") for g in self.groups]
        for topic in self.writes:
            rules += [
                Acl(self.principal, "TOPIC", topic, "WRITE"),
                Acl(self.principal, "TOPIC", topic, "DESCRIBE"),
            ]
        return rules

    def commands(self, bootstrap: str, command_config: str) -> list[str]:
        """The grant as ``kafka-acls.sh`` commands (one for reading, one for writing)."""
        base = [
            "kafka-acls.sh",
            "--bootstrap-server",
            bootstrap,
            "--command-config",
            command_config,
            "--add",
            "--allow-principal",
            self.principal,
        ]
        out = []
        if self.reads or self.groups:
            args = [*base, "--operation", "Read"]
            for topic in self.reads:
                args += ["--topic", topic]
            for group in self.groups:
                args += ["--group", group]
            out.append(shlex.join(args))
        if self.writes:
            args = [*base, "--operation", "Write", "--operation", "Describe"]
            for topic in self.writes:
                args += ["--topic", topic]
            out.append(shlex.join(args))
        return out


def principal_of(service: str, pattern: str = DEFAULT_PRINCIPAL) -> str:
    """The principal of ``service`` by ``pattern`` (``{service}`` is replaced)."""
    return pattern.replace("{service}", service)


def _apps(names: Sequence[str], scratch: Path) -> Iterable[tuple[str, object]]:
    from choreokit.services.runtime.app import Runtime, load_factory

    for name in names:
        try:
            yield name, load_factory(name)(Runtime(name=name, data_dir=scratch))
        except (ChoreoError, ImportError, ValueError) as exc:
            raise ChoreoError(
                f"cannot derive the ACLs of service {name}: its app cannot be built here ({exc}); "
                "run the command with that service's configuration, or leave it out with --service"
            ) from exc


def _grant_of_services(name: str, principal: str, services: Iterable[Service]) -> Grant:
    reads: set[str] = set()
    groups: set[str] = set()
    writes: set[str] = set()
    for service in services:
        if service.topics:
            reads.update(service.topics)
            groups.add(service.name)
            writes.update(dead_letter_topic(t) for t in service.topics)
        writes.update(model.event_info().topic for model in service.publishes)
    return Grant(
        name, principal, tuple(sorted(reads)), tuple(sorted(groups)), tuple(sorted(writes))
    )


def _observer_grant(
    name: str, principal: str, app: object, topics: Sequence[str], replay: bool
) -> Grant:
    from choreokit.events.dlq import AUDIT_TOPIC
    from choreokit.services.saga_observer.app import ObserverApp

    assert isinstance(app, ObserverApp)
    pattern = re.compile(app.settings.topic_pattern)
    base = _grant_of_services(name, principal, app.services)
    observed = [t for t in topics if pattern.match(t)]
    writes = set(base.writes)
    if replay:  # a replay writes the record back to its topic, and its audit record
        writes.update(t for t in observed if not t.endswith(DLQ_SUFFIX) and t != AUDIT_TOPIC)
        writes.add(AUDIT_TOPIC)
    return Grant(name, principal, tuple(observed), (app.group,), tuple(sorted(writes)))


def _gateway_grant(name: str, principal: str, app: object) -> Grant:
    from choreokit.services.gateway import GatewayApp, KeyStore

    assert isinstance(app, GatewayApp)
    settings = app.settings
    types = list(default_registry.types())
    if settings.keys_file is not None or settings.keys:
        keys = KeyStore.load(file=settings.keys_file, inline=settings.keys).entries()
        types = [t for t in types if any(key.may_publish(t) for key in keys)]
    writes = sorted({default_registry.topic(t) for t in types})
    return Grant(name, principal, (), (), tuple(writes))


def deployment_grants(
    services: Sequence[str] | None = None,
    principal: str = DEFAULT_PRINCIPAL,
    *,
    observer_replay: bool = True,
) -> list[Grant]:
    """The grant of each installed service (or of ``services``), from its declarations.

    ``observer_replay`` lets the saga observer write what its replay button
    writes (the observed event topics and the DLQ audit topic).

    Raises:
        ChoreoError: A service's app cannot be built with the configuration at hand.
    """
    from choreokit.events.dlq import AUDIT_TOPIC
    from choreokit.services.gateway import GatewayApp
    from choreokit.services.runtime.app import service_names
    from choreokit.services.runtime.discovery import load_event_modules
    from choreokit.services.saga_observer.app import ObserverApp

    load_event_modules()
    event_topics = {default_registry.topic(t) for t in default_registry.types()}
    topics = sorted(event_topics | {dead_letter_topic(t) for t in event_topics} | {AUDIT_TOPIC})
    grants = []
    with tempfile.TemporaryDirectory() as scratch:
        for name, app in _apps(list(services or service_names()), Path(scratch)):
            who = principal_of(name, principal)
            if isinstance(app, ObserverApp):
                grants.append(_observer_grant(name, who, app, topics, observer_replay))
            elif isinstance(app, GatewayApp):
                grants.append(_gateway_grant(name, who, app))
            else:
                found = [s for s in getattr(app, "services", ()) if isinstance(s, Service)]
                grants.append(_grant_of_services(name, who, found))
    return grants
