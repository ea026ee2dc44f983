"""Shipping's settings, read from the environment when the service is built."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field, PositiveInt
from pydantic_settings import SettingsConfigDict

from choreokit.events import Duration, StrictSettings


class ShippingSettings(StrictSettings):
    """``CHOREO_SHIPPING_*`` variables (an unknown one is an error)."""

    model_config = SettingsConfigDict(env_prefix="CHOREO_SHIPPING_", frozen=True, extra="ignore")

    db: str | None = None
    """Database URL; default: a SQLite file in the data directory."""

    carrier_db: str | None = None
    """Where the simulated carrier keeps its own records (it stands for another company)."""

    carrier_latency: Duration = timedelta(milliseconds=10)
    """How long each carrier call takes."""

    carrier_failure_rate: float = Field(default=0.1, ge=0.0, le=1.0)
    """Share of carrier calls that fail transiently (they clear within the retry budget)."""

    step_timeout: Duration = timedelta(seconds=2)
    """Longest one carrier call may take."""

    step_attempts: PositiveInt = 4
    """Tries per step (the carrier's transient faults clear within three)."""

    report_steps: bool = True
    """Publish each shipment run's steps (``orchestration.run``) for the saga observer."""

    step_backoff: Duration = timedelta(milliseconds=20)
    """Wait before the first retry of a step (doubling after)."""
