"""docker-compose.yml's ``acls`` job, done in-process for :class:`~tests.rig.compose.ComposeRun`.

The job runs on the Kafka image: ``deploy/kafka/secure/apply-acls.sh`` writes the admin's
client properties, then runs with ``sh`` the ``kafka-acls.sh`` commands the ``topics`` job
wrote into the shared ``acls`` volume. Here the same two scripts are read: the applier must
do exactly those two things, every command must be ``kafka-acls.sh --add`` to the rig's
bootstrap with the properties file the applier wrote, and the rules the commands name
(``kafka-acls.sh`` crosses every ``--operation`` with every resource) are created with an admin
client, then waited for until the broker lists them. A job that would fail (a missing script,
a command the real tool would reject, an option it does not pass) fails here.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from itertools import product
from pathlib import Path
from typing import TYPE_CHECKING

from tests.support import wait_until

if TYPE_CHECKING:
    from choreokit.services.runtime.kafka_cluster import KafkaCluster
    from tests.rig.compose import ComposeRun, StandIn

Rule = dict[str, str]
"""One ACL as ``choreo topics acls --json`` prints it."""

AdminConfig = Mapping[str, str | int | float | bool]
"""confluent-kafka's configuration of the rig's super user."""

_RESOURCES = {"--topic": "TOPIC", "--group": "GROUP", "--transactional-id": "TRANSACTIONAL_ID"}
_PATTERNS = {"literal": "LITERAL", "prefixed": "PREFIXED"}


class AclScriptError(ValueError):
    """A script of the job does something the real job would not do, or would fail at."""


def parse_commands(script: str, *, bootstrap: str, command_config: str) -> list[Rule]:
    """The rules of a script of ``kafka-acls.sh --add`` commands (as ``choreo topics acls``
    prints them); each must reach ``bootstrap`` with the admin's ``command_config``."""
    rules: list[Rule] = []
    for number, raw in enumerate(script.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#") or line == "set -e":
            continue
        args = shlex.split(line)
        if args[0] != "kafka-acls.sh":
            raise AclScriptError(f"line {number}: {args[0]} is not kafka-acls.sh")
        rules += _rules(args[1:], number, bootstrap=bootstrap, command_config=command_config)
    return rules


def _rules(args: list[str], number: int, *, bootstrap: str, command_config: str) -> list[Rule]:
    values: dict[str, list[str]] = {}
    resources: list[tuple[str, str]] = []
    flags: set[str] = set()
    items = iter(args)
    for option in items:
        if option == "--add":
            flags.add(option)
            continue
        value = next(items, None)
        if value is None:
            raise AclScriptError(f"line {number}: {option} needs a value")
        if option in _RESOURCES:
            resources.append((_RESOURCES[option], value))
        elif option in {
            "--bootstrap-server",
            "--command-config",
            "--allow-principal",
            "--allow-host",
            "--operation",
            "--resource-pattern-type",
        }:
            values.setdefault(option, []).append(value)
        else:
            raise AclScriptError(f"line {number}: the stand-in does not know {option}")
    if "--add" not in flags:
        raise AclScriptError(f"line {number}: not an --add command")
    if values.get("--bootstrap-server") != [bootstrap]:
        raise AclScriptError(
            f"line {number}: --bootstrap-server {values.get('--bootstrap-server')} "
            f"is not the cluster's ({bootstrap})"
        )
    if values.get("--command-config") != [command_config]:
        raise AclScriptError(
            f"line {number}: --command-config {values.get('--command-config')} is not the "
            f"file the job writes the admin's properties to ({command_config})"
        )
    principals = values.get("--allow-principal", [])
    operations = values.get("--operation", [])
    if not principals or not operations or not resources:
        raise AclScriptError(f"line {number}: needs a principal, an operation and a resource")
    (pattern,) = values.get("--resource-pattern-type", ["literal"])
    return [
        {
            "principal": principal,
            "host": host,
            "operation": operation.upper(),
            "permission_type": "ALLOW",
            "resource_type": kind,
            "resource_name": resource,
            "pattern_type": _PATTERNS[pattern.lower()],
        }
        for principal, host, operation, (kind, resource) in product(
            principals, values.get("--allow-host", ["*"]), operations, resources
        )
    ]


def read_applier(script: str) -> tuple[str, str]:
    """What ``apply-acls.sh`` does: (the admin properties file it writes, the script it runs).

    Raises:
        AclScriptError: It does anything else.
    """
    written: str | None = None
    runs: str | None = None
    for raw in script.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or line == "set -eu":
            continue
        if match := re.fullmatch(r"\S+/admin-properties\.sh > (\S+)", line):
            written = match.group(1)
        elif match := re.fullmatch(r"(?:[A-Z_]+=\S+ )*sh (\S+)", line):
            runs = match.group(1)
        else:
            raise AclScriptError(f"the stand-in does not know what {line!r} does")
    if written is None or runs is None:
        raise AclScriptError("it neither writes the admin's properties nor runs a script")
    return written, runs


def admin_config(cluster: KafkaCluster) -> dict[str, str | int | float | bool]:
    """confluent-kafka's configuration of a secure rig's admin (what apply-acls.sh's
    properties say)."""
    assert cluster.security is not None
    assert cluster.tls is not None
    return {
        "bootstrap.servers": cluster.bootstrap,
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": cluster.security.admin,
        "sasl.password": cluster.security.admin_password,
        "ssl.ca.location": str(cluster.tls.ca),
    }


def apply_rules(admin: AdminConfig, rules: list[Rule]) -> None:
    """Create ``rules`` as the admin (confluent-kafka's admin client); wait until listed."""
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.admin._acl import (
        AclBinding,
        AclBindingFilter,
        AclOperation,
        AclPermissionType,
    )
    from confluent_kafka.admin._resource import ResourcePatternType, ResourceType

    client = AdminClient(dict(admin))
    bindings = [
        AclBinding(
            ResourceType[rule["resource_type"]],
            rule["resource_name"],
            ResourcePatternType[rule["pattern_type"]],
            rule["principal"],
            rule["host"],
            AclOperation[rule["operation"]],
            AclPermissionType[rule["permission_type"]],
        )
        for rule in rules
    ]
    for future in client.create_acls(bindings).values():
        future.result(timeout=30)
    every = AclBindingFilter(
        ResourceType.ANY,
        None,  # type: ignore[arg-type]  # None matches any name, principal and host
        ResourcePatternType.ANY,
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        AclOperation.ANY,
        AclPermissionType.ANY,
    )
    wanted = len({tuple(sorted(rule.items())) for rule in rules})
    wait_until(
        lambda: len(client.describe_acls(every).result(timeout=10)) >= wanted,
        timeout=30,
        what="the ACLs listed by the broker",
    )


def acls_job(admin: AdminConfig) -> StandIn:
    """The stand-in for the compose ``acls`` job, applying as ``admin``."""
    from tests.rig.compose import ComposeError

    def run(compose: ComposeRun, name: str) -> None:
        entrypoint = compose.argv(name)[0]
        applier = Path(compose.local_path(name, entrypoint))
        try:
            command_config, script = read_applier(applier.read_text())
            commands = Path(compose.local_path(name, script))  # missing: never written
            rules = parse_commands(
                commands.read_text(),
                bootstrap=compose.rig.kafka_bootstrap,
                command_config=command_config,
            )
        except (OSError, AclScriptError) as exc:
            raise ComposeError(f"{name} ({entrypoint}) would fail: {exc}") from exc
        apply_rules(admin, rules)

    return run
