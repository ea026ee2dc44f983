"""One record on its way to its handler: where it came from, what it holds, who wants it.

Plain data only; the behaviour a handler is given lives in ``_context``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from choreokit.events._envelope import Envelope
from choreokit.events._model import Event
from choreokit.events._registry import Registry

if TYPE_CHECKING:
    from choreokit.events._outbound import Outbound, SendFuture


@dataclass(frozen=True, slots=True)
class RecordInfo:
    """Where a record came from.

    Attributes:
        topic: Topic the record was read from.
        partition: Its partition.
        offset: Its offset in the partition.
        key: Its key, as sent.
        timestamp_ms: The record's timestamp (milliseconds since the epoch).
        headers: Its headers, exactly as sent.
        value: Its value, exactly as sent.
    """

    topic: str
    partition: int
    offset: int
    key: bytes | None
    timestamp_ms: int
    headers: tuple[tuple[str, bytes | None], ...]
    value: bytes | None


DeadLetterEvent = Callable[[Any, BaseException], Event | None]
"""Given the event a handler gave up on and why, the failure event to publish, or ``None``."""


@dataclass(frozen=True, slots=True)
class HandlerSpec:
    """A handler as registered: its function, the model it wants, and its name.

    Attributes:
        on_dead_letter: Builds the failure event published in the flow when the
            handler's event goes to the dead-letter topic (see :meth:`Service.handler`).
    """

    name: str
    model: type[Event]
    fn: Callable[..., Awaitable[Any]]
    takes_context: bool
    on_dead_letter: DeadLetterEvent | None = None


@dataclass(slots=True)
class Delivery:
    """One decoded record on its way through the middlewares to its handler.

    Attributes:
        record: Where it came from, with the original bytes.
        envelope: Its CloudEvents attributes.
        event: Its payload, upcast to the handler's version.
        handler: The handler it is for.
        group: The consumer group (the service's name).
        registry: Where the service's event types are declared (an inbox rebuilds the
            events it recorded from it).
        attempt: 1 on the first try, then 2, 3, ... on retries.
        outputs: Events the handler published; sent once the handling succeeded.
        pending: Futures of those sends, resolved on acknowledgement.
    """

    record: RecordInfo
    envelope: Envelope
    event: Event
    handler: HandlerSpec
    group: str
    registry: Registry | None = None
    attempt: int = 0
    outputs: list[Outbound] = field(default_factory=list)
    pending: list[SendFuture] = field(default_factory=list)


Next = Callable[[Delivery], Awaitable[None]]
