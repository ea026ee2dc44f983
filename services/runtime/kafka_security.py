"""SASL_SSL, SCRAM users and ACLs for the Apache Kafka rig (:class:`KafkaCluster`'s ``security``).

With a :class:`RigSecurity` the rig's node listens for clients on a
``SASL_SSL`` listener only: TLS with a CA and a broker certificate made with
``openssl`` for the run (PEM key and trust stores), ``SCRAM-SHA-512`` users
written at format time (``--add-scram``), the KRaft ``StandardAuthorizer``
with ``allow.everyone.if.no.acl.found=false``, and one super user for the
controller listener, the inter-broker listener and the tests' admin work.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import socket
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from choreokit.events import KafkaSettings
from choreokit.services.runtime.kafka_artifacts import KafkaRigError

MECHANISM = "SCRAM-SHA-512"
"""The SASL mechanism of the rig's client listener."""

AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
"""KRaft's own authorizer: ACLs live in the cluster metadata."""

_DAYS = "2"
"""The run's certificates are valid for two days: a test run never needs more."""


def _password() -> str:
    return secrets.token_urlsafe(18)


@dataclass(frozen=True)
class RigSecurity:
    """How a secure rig authenticates and authorizes.

    Args:
        users: SCRAM-SHA-512 users (name -> password) created at format time; each is
            principal ``User:<name>`` and may do only what ACLs grant it.
        admin: The super user (controller and inter-broker listeners, tests' admin work).
        admin_password: Its password (random by default).
    """

    users: Mapping[str, str] = field(default_factory=dict)
    admin: str = "admin"
    admin_password: str = field(default_factory=_password)

    def password(self, user: str) -> str:
        """The password of ``user`` (the admin's included).

        Raises:
            KafkaRigError: No such user was declared.
        """
        if user == self.admin:
            return self.admin_password
        try:
            return self.users[user]
        except KeyError:
            raise KafkaRigError(
                f"the rig has no SCRAM user {user!r}; declare it in RigSecurity(users=...)"
            ) from None


@dataclass(frozen=True)
class RigTls:
    """The run's certificate files (PEM)."""

    directory: Path

    @property
    def ca(self) -> Path:
        """The CA certificate clients trust (``CHOREO_KAFKA_SSL_CAFILE``)."""
        return self.directory / "ca.pem"

    @property
    def keystore(self) -> Path:
        """The broker's key, then its certificate chain (``ssl.keystore.type=PEM``)."""
        return self.directory / "broker-keystore.pem"


def make_certificates(directory: Path, host: str) -> RigTls:
    """Make a CA and a broker certificate for ``host`` (and ``localhost``) with ``openssl``.

    Raises:
        KafkaRigError: ``openssl`` is missing or failed.
    """
    openssl = shutil.which("openssl")
    if openssl is None:
        raise KafkaRigError(
            "a secure Kafka rig makes its certificates with openssl: install it "
            "(apt-get install openssl)"
        )
    directory.mkdir(parents=True, exist_ok=True)
    tls = RigTls(directory)
    ca_key, key, csr, cert = (
        directory / n for n in ("ca.key", "broker.key", "broker.csr", "b.pem")
    )
    san = directory / "san.cnf"
    san.write_text(f"subjectAltName=IP:{host},DNS:localhost\n")
    steps = [
        ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out",
         str(tls.ca), "-days", _DAYS, "-subj", "/CN=choreokit rig CA"],
        ["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(key)],
        ["req", "-new", "-key", str(key), "-out", str(csr), "-subj", f"/CN={host}"],
        ["x509", "-req", "-in", str(csr), "-CA", str(tls.ca), "-CAkey", str(ca_key),
         "-CAcreateserial", "-out", str(cert), "-days", _DAYS, "-extfile", str(san)],
    ]  # fmt: skip
    for args in steps:
        result = subprocess.run([openssl, *args], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise KafkaRigError(f"openssl {args[0]} failed: {result.stderr.strip()}")
    tls.keystore.write_text(key.read_text() + cert.read_text() + tls.ca.read_text())
    ca_key.unlink()
    return tls


def _jaas(module: str, user: str, password: str, extra: str = "") -> str:
    return f'{module} required username="{user}" password="{password}"{extra};'


def server_properties(
    security: RigSecurity, tls: RigTls, *, host: str, port: int, controller_port: int
) -> dict[str, str]:
    """The ``server.properties`` entries of a secure node (they replace the listener ones).

    Clients reach ``SASL_SSL://host:port`` only. The controller listener takes
    PLAIN from the admin (it cannot read SCRAM credentials from metadata it
    serves), on loopback.
    """
    admin, password = security.admin, security.admin_password
    plain = "org.apache.kafka.common.security.plain.PlainLoginModule"
    scram = "org.apache.kafka.common.security.scram.ScramLoginModule"
    return {
        "listeners": f"SASL_SSL://{host}:{port},CONTROLLER://{host}:{controller_port}",
        "advertised.listeners": f"SASL_SSL://{host}:{port}",
        "listener.security.protocol.map": "CONTROLLER:SASL_PLAINTEXT,SASL_SSL:SASL_SSL",
        "inter.broker.listener.name": "SASL_SSL",
        "sasl.enabled.mechanisms": MECHANISM,
        "sasl.mechanism.inter.broker.protocol": MECHANISM,
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": _jaas(scram, admin, password),
        "sasl.mechanism.controller.protocol": "PLAIN",
        "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
        "listener.name.controller.plain.sasl.jaas.config": _jaas(
            plain, admin, password, f' user_{admin}="{password}"'
        ),
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(tls.keystore),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(tls.ca),
        "ssl.client.auth": "none",
        "authorizer.class.name": AUTHORIZER,
        "super.users": f"User:{admin}",
        "allow.everyone.if.no.acl.found": "false",
    }


def scram_arguments(security: RigSecurity) -> list[str]:
    """``--add-scram`` arguments of the storage tool: every user and the admin."""
    users = {**security.users, security.admin: security.admin_password}
    out: list[str] = []
    for user, password in users.items():
        out += ["--add-scram", f"{MECHANISM}=[name={user},password={password}]"]
    return out


def client_settings(
    security: RigSecurity, tls: RigTls, user: str, **overrides: object
) -> KafkaSettings:
    """Client settings of ``user`` on the secure rig: SASL_SSL, SCRAM-SHA-512, the run's CA.

    ``overrides`` (``bootstrap=`` at least) are further :class:`KafkaSettings` fields.
    """
    values: dict[str, object] = {
        "security_protocol": "SASL_SSL",
        "ssl_cafile": tls.ca,
        "sasl_mechanism": MECHANISM,
        "sasl_username": user,
        "sasl_password": security.password(user),
        **overrides,
    }
    return KafkaSettings.model_validate(values)


def client_environment(
    security: RigSecurity, tls: RigTls, bootstrap: str, user: str
) -> dict[str, str]:
    """The ``CHOREO_KAFKA_*`` variables giving a process ``user``'s connection to the rig."""
    return {
        "CHOREO_KAFKA_BOOTSTRAP": bootstrap,
        "CHOREO_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "CHOREO_KAFKA_SSL_CAFILE": str(tls.ca),
        "CHOREO_KAFKA_SASL_MECHANISM": MECHANISM,
        "CHOREO_KAFKA_SASL_USERNAME": user,
        "CHOREO_KAFKA_SASL_PASSWORD": security.password(user),
    }


def brokers_answering(settings: KafkaSettings, timeout: float = 5.0) -> set[int] | None:
    """Broker ids a metadata request over ``settings``' connection lists; ``None``: no answer."""
    from aiokafka.client import AIOKafkaClient
    from aiokafka.errors import KafkaError

    from choreokit.events import client_options

    host, _, port = settings.bootstrap.split(",")[0].strip().rpartition(":")
    try:  # nothing listens yet: say so without aiokafka logging a failed connection
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError:
        return None

    async def ask() -> set[int] | None:
        client = AIOKafkaClient(**{**client_options(settings), "request_timeout_ms": 3000})
        try:
            await asyncio.wait_for(client.bootstrap(), timeout)
            return {broker.nodeId for broker in client.cluster.brokers()}
        except (KafkaError, OSError, TimeoutError):
            return None
        finally:
            await client.close()

    return asyncio.run(ask())
