"""Pieces the commands share: the bootstrap option and error reporting."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import click

from choreokit.events import ChoreoError, ConfigurationError

T = TypeVar("T")

bootstrap_option = click.option(
    "--bootstrap",
    envvar="CHOREO_KAFKA_BOOTSTRAP",
    default="127.0.0.1:9092",
    show_default=True,
    help="Kafka bootstrap servers (env CHOREO_KAFKA_BOOTSTRAP).",
)


@contextlib.contextmanager
def quiet_kafka_logs() -> Iterator[None]:
    """Silence aiokafka's own log lines for a short command (unless --log-level DEBUG).

    It logs every failed connection attempt at ERROR; the command reports the
    failure itself, once, saying what to do.
    """
    kafka = logging.getLogger("aiokafka")
    if logging.getLogger().getEffectiveLevel() <= logging.DEBUG:
        yield
        return
    level = kafka.level
    kafka.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        kafka.setLevel(level)


def run_async(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``main`` and turn choreokit errors into a message and an exit code.

    Exit codes: 2 for input the user can fix (configuration, schema), 1 for
    everything else (the broker unreachable, a send refused).
    """
    try:
        with quiet_kafka_logs():
            return asyncio.run(main())
    except (ConfigurationError, ChoreoError) as exc:
        code = 2 if isinstance(exc, ConfigurationError) else 1
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(code) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None


def answers_somewhere(bootstrap: str) -> bool:
    """Whether any of the ``host:port`` bootstrap servers answers Kafka's protocol.

    A listener on TLS or SASL (``CHOREO_KAFKA_SECURITY_PROTOCOL`` other than
    ``PLAINTEXT``) answers nothing before the handshake: accepting the connection
    counts there, and the clients report a failed handshake themselves.
    """
    import os
    import socket

    from choreokit.services.runtime import answers_kafka

    secured = os.environ.get("CHOREO_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT").upper() != "PLAINTEXT"
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        if not port.isdigit():
            continue
        address = (host.strip("[]") or "127.0.0.1", int(port))
        if not secured and answers_kafka(*address):
            return True
        if secured:
            with contextlib.suppress(OSError), socket.create_connection(address, timeout=1.0):
                return True
    return False
