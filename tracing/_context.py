"""The record being handled, as the tracing middlewares and the log filter see it."""

from __future__ import annotations

from contextvars import ContextVar

from choreokit.events import Envelope

handling: ContextVar[Envelope | None] = ContextVar("choreokit_handling", default=None)
"""Envelope of the record whose handling is running in this task (``None`` elsewhere).

Both tracing middlewares set it around a delivery: the relay reads it to pass the
trace context on, the log filter to name the flow.
"""
