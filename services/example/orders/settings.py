"""Orders' settings, read from the environment when the service is built."""

from __future__ import annotations

from typing import ClassVar

from pydantic import PositiveInt, SecretStr
from pydantic_settings import SettingsConfigDict

from choreokit.events import ConfigurationError, StrictSettings
from choreokit.services.runtime.access import is_loopback

PLACEHOLDER_TOKEN = "change-me"  # noqa: S105 - docker-compose.yml's placeholder, refused
"""The intake token docker-compose.yml falls back to; the production profile refuses it."""


class OrdersSettings(StrictSettings):
    """``CHOREO_ORDERS_*`` variables (an unknown one is an error)."""

    model_config = SettingsConfigDict(env_prefix="CHOREO_ORDERS_", frozen=True, extra="ignore")
    known_elsewhere: ClassVar[frozenset[str]] = frozenset({"CHOREO_ORDERS_APPROVAL_ABOVE_CENTS"})
    """The order policy's approval amount is read where payment is taken (payments)."""

    db: str | None = None
    """Database URL; default: a SQLite file in the data directory."""

    host: str = "127.0.0.1"
    port: int = 8082
    """Where the order intake API listens."""

    token: SecretStr | None = None
    """If set, the intake API requires ``Authorization: Bearer <token>``."""

    max_body_bytes: PositiveInt = 64 * 1024


def check_production(settings: OrdersSettings) -> None:
    """Refuse an intake that ``CHOREO_PROFILE=production`` must not run.

    Raises:
        ConfigurationError: The token is the compose file's placeholder, or the intake
            listens beyond loopback without one; the message names the setting to change.
    """
    token = settings.token.get_secret_value() if settings.token is not None else None
    if token is not None and token.strip() in {"", PLACEHOLDER_TOKEN}:
        raise ConfigurationError(
            f"CHOREO_PROFILE=production refuses CHOREO_ORDERS_TOKEN={token.strip()!r} (the "
            "placeholder anyone can read): set CHOREO_ORDERS_TOKEN to a random secret, e.g. "
            "the output of 'openssl rand -hex 24'"
        )
    if token is None and not is_loopback(settings.host):
        raise ConfigurationError(
            f"CHOREO_PROFILE=production refuses an order intake without authentication on "
            f"{settings.host}: set CHOREO_ORDERS_TOKEN to a random secret, or "
            "CHOREO_ORDERS_HOST=127.0.0.1"
        )
