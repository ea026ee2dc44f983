"""Payments' settings, read from the environment when the service is built."""

from __future__ import annotations

from pydantic import AliasChoices, Field, NonNegativeInt
from pydantic_settings import SettingsConfigDict

from choreokit.events import StrictSettings


class PaymentsSettings(StrictSettings):
    """``CHOREO_PAYMENTS_*`` variables (an unknown one is an error)."""

    model_config = SettingsConfigDict(env_prefix="CHOREO_PAYMENTS_", frozen=True, extra="ignore")

    db: str | None = None
    """Database URL; default: a SQLite file in the data directory."""

    credit_limit_cents: NonNegativeInt = 100_000
    """The simulated card network declines any single payment above this amount."""

    approval_above_cents: NonNegativeInt | None = Field(
        default=None,
        validation_alias=AliasChoices("CHOREO_ORDERS_APPROVAL_ABOVE_CENTS"),
    )
    """Orders above this amount wait for a person's approval before payment is taken
    (``CHOREO_ORDERS_APPROVAL_ABOVE_CENTS``: the order policy, applied where payment is
    taken). Unset: no order waits."""

    approvals_db: str | None = None
    """Database URL of the waits for approval; default: a SQLite file of its own in the
    data directory (the waits are written in transactions of their own)."""
