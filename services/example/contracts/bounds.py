"""The bounds every field of the example's events keeps, so no value outgrows a store.

Each service keeps amounts and counts in 32-bit integer columns (PostgreSQL's
``INTEGER``) and ids in ``VARCHAR(64)``/``VARCHAR(80)``: an event whose value
does not fit would fail in the database, be dead-lettered mid-flow and leave
the steps before it (reserved stock) in place. The models refuse such values
where they enter, so a producer hears at once (the gateway answers 422) and a
record sent straight to Kafka is dead-lettered by its first reader, before
any step runs.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

MAX_INT32 = 2**31 - 1
MAX_CENTS = MAX_INT32
"""Largest amount in cents (about 21 million in the currency): the columns' range."""

Id = Annotated[str, Field(min_length=1, max_length=64)]
"""An order's, a customer's or a SKU's id."""

DerivedId = Annotated[str, Field(min_length=1, max_length=80)]
"""An id a service derives from an order id (``res-<order id>``)."""

Cents = Annotated[int, Field(ge=0, le=MAX_CENTS)]
"""An amount in cents."""

Count = Annotated[int, Field(ge=0, le=MAX_INT32)]
"""A quantity of stock."""

Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
"""An ISO 4217 code."""

Text = Annotated[str, Field(max_length=1024)]
"""A reason or a detail for people to read."""

Name = Annotated[str, Field(min_length=1, max_length=64)]
"""A short name: a carrier, a step, a tracking number."""
