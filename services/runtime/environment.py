"""Which environment variables a service reads: from its settings classes, nothing guessed."""

from __future__ import annotations

from collections.abc import Iterable

from pydantic_settings import BaseSettings

from choreokit.events import KafkaSettings, settings_variables
from choreokit.services.runtime import discovery
from choreokit.services.runtime.app import DATA_DIR_ENV, READY_FILE_ENV
from choreokit.services.runtime.status import StatusSettings

RUNTIME_VARIABLES = frozenset(
    {
        DATA_DIR_ENV,
        READY_FILE_ENV,
        "CHOREO_LOG_LEVEL",
        "CHOREO_LOG_FORMAT",
        "CHOREO_TRACING_DIRECT_W3C",
        discovery.MODULES_ENV,
        discovery.EXAMPLE_ENV,
    }
)
"""Read by ``choreo run`` itself, whatever the service."""

STANDARD_PREFIXES = ("OTEL_",)
"""Standard variables read by the libraries (OpenTelemetry's SDK and exporters)."""


def variables_of(settings: type[BaseSettings]) -> frozenset[str]:
    """The variables a settings class reads: its prefix plus each field, and alias choices."""
    return settings_variables(settings)


def settings_of(service: str) -> tuple[type[BaseSettings], ...]:
    """The settings classes of ``service``: its app's ``SETTINGS``, Kafka's, the status port's."""
    target = discovery.in_effect().services.get(service)
    if target is None:
        raise KeyError(service)
    module = discovery.import_module(target.split(":", 1)[0])
    own: Iterable[type[BaseSettings]] = getattr(module, "SETTINGS", ())
    return (KafkaSettings, StatusSettings, *own)


def variables_read_by(service: str) -> frozenset[str]:
    """Every variable ``choreo run SERVICE`` reads, but the standard ``OTEL_*`` ones."""
    names = set(RUNTIME_VARIABLES)
    for settings in settings_of(service):
        names |= variables_of(settings)
    return frozenset(names)


def is_read_by(service: str, variable: str) -> bool:
    """Whether setting ``variable`` has any effect on ``service``."""
    return variable.startswith(STANDARD_PREFIXES) or variable in variables_read_by(service)
