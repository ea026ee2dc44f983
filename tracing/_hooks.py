"""The signatures of the event layer's middleware hooks, as the tracing middlewares use them."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiokafka.structs import RecordMetadata

from choreokit.events import Delivery, Outbound

Next = Callable[[Delivery], Awaitable[None]]
"""The rest of the delivery chain."""

SendFuture = asyncio.Future[RecordMetadata]
"""Resolves when the broker acknowledges a record."""

Send = Callable[[Outbound], Awaitable[SendFuture]]
"""The rest of the publish chain."""
