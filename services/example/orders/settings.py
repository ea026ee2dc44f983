"""Orders' settings, read from the environment when the service is built."""

from __future__ import annotations

from pydantic import PositiveInt, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class OrdersSettings(BaseSettings):
    """``CHOREO_ORDERS_*`` variables."""

    model_config = SettingsConfigDict(env_prefix="CHOREO_ORDERS_", frozen=True, extra="ignore")

    db: str | None = None
    """Database URL; default: a SQLite file in the data directory."""

    host: str = "127.0.0.1"
    port: int = 8082
    """Where the order intake API listens."""

    token: SecretStr | None = None
    """If set, the intake API requires ``Authorization: Bearer <token>``."""

    max_body_bytes: PositiveInt = 64 * 1024
