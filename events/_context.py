"""What a handler is given while one record is being handled: its context."""

from __future__ import annotations

from collections.abc import Sequence
from contextvars import ContextVar

from choreokit.events._envelope import Envelope
from choreokit.events._errors import ConfigurationError
from choreokit.events._handling import Delivery, RecordInfo
from choreokit.events._ids import derived_event_id
from choreokit.events._model import Event
from choreokit.events._outbound import Outbound
from choreokit.events._publisher import Publisher


class HandlerContext:
    """Handed to a handler: the event's attributes, and publishing as its consequence.

    Events published through the context (or the service) while a handler runs
    inherit the flow's correlation id, name the handled event as their cause, and
    are sent only once the handler has returned; if it raises, they are dropped
    with that attempt. Their ids derive from the cause, so handling a redelivered
    event again publishes the very same events.
    """

    __slots__ = ("_delivery", "_producer_name", "_publisher", "outputs")

    def __init__(self, delivery: Delivery, publisher: Publisher, producer_name: str) -> None:
        self._delivery = delivery
        self._publisher = publisher
        self._producer_name = producer_name
        self.outputs: list[Outbound] = []

    @property
    def envelope(self) -> Envelope:
        """The handled event's CloudEvents attributes."""
        return self._delivery.envelope

    @property
    def correlation_id(self) -> str:
        """The flow this event belongs to."""
        return self._delivery.envelope.correlation_id

    @property
    def record(self) -> RecordInfo:
        """Topic, partition and offset of the handled record."""
        return self._delivery.record

    @property
    def attempt(self) -> int:
        """1 on the first try, then 2, 3, ... on retries."""
        return self._delivery.attempt

    async def publish(
        self, event: Event, *, cause: Envelope | None = None, joined: Sequence[str] = ()
    ) -> Envelope:
        """Publish ``event`` as a consequence of the handled one; returns its envelope.

        Args:
            event: What to publish.
            cause: Another event of the same flow to name as the cause, when
                the handled event only completed a join (e.g. the second of
                two events a service waits for) and the other one is the
                real trigger. Default: the handled event.
            joined: The ids of the other events of the flow this one joins (a
                join's output: ``cause`` completed it); sent as ``ce_joined``.

        Raises:
            ConfigurationError: ``cause`` belongs to another flow.
        """
        handled = self._delivery.envelope
        if cause is None:
            cause = handled
        elif cause.correlation_id != handled.correlation_id:
            raise ConfigurationError(
                f"cause {cause.id} belongs to flow {cause.correlation_id}, not to "
                f"{handled.correlation_id}: a cause must come from the same flow"
            )
        outbound = self._publisher.prepare(
            event,
            correlation_id=cause.correlation_id,
            causation_id=cause.id,
            event_id=derived_event_id(cause.id, self._producer_name, len(self.outputs)),
            joined=",".join(joined) or None,
        )
        self.outputs.append(outbound)
        return outbound.envelope


current_context: ContextVar[HandlerContext | None] = ContextVar(
    "choreokit_handler_context", default=None
)
