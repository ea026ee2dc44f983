"""Inventory's settings, read from the environment when the service is built."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from choreokit.events import StrictSettings

DEFAULT_CATALOG = {f"SKU-{n}": 1_000_000 for n in range(1, 10)} | {"SKU-RARE": 0}


class InventorySettings(StrictSettings):
    """``CHOREO_INVENTORY_*`` variables (an unknown one is an error)."""

    model_config = SettingsConfigDict(env_prefix="CHOREO_INVENTORY_", frozen=True, extra="ignore")

    db: str | None = None
    """Database URL; default: a SQLite file in the data directory."""

    catalog: dict[str, int] = Field(default_factory=lambda: dict(DEFAULT_CATALOG))
    """Stock to seed for SKUs the database does not know yet (JSON object in the environment)."""
