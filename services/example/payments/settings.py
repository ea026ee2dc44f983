"""Payments' settings, read from the environment when the service is built."""

from __future__ import annotations

from pydantic import NonNegativeInt
from pydantic_settings import SettingsConfigDict

from choreokit.events import StrictSettings


class PaymentsSettings(StrictSettings):
    """``CHOREO_PAYMENTS_*`` variables (an unknown one is an error)."""

    model_config = SettingsConfigDict(env_prefix="CHOREO_PAYMENTS_", frozen=True, extra="ignore")

    db: str | None = None
    """Database URL; default: a SQLite file in the data directory."""

    credit_limit_cents: NonNegativeInt = 100_000
    """The simulated card network declines any single payment above this amount."""
