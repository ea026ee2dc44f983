"""Pieces the commands share: the bootstrap option and error reporting."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
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


def run_async(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``main`` and turn choreokit errors into a message and an exit code.

    Exit codes: 2 for input the user can fix (configuration, schema), 1 for
    everything else (the broker unreachable, a send refused).
    """
    try:
        return asyncio.run(main())
    except (ConfigurationError, ChoreoError) as exc:
        code = 2 if isinstance(exc, ConfigurationError) else 1
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(code) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None
