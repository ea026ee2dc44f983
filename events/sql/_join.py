"""Fan-in: act once when one event of each of several types has arrived for a key.

"Ship once the stock is reserved *and* the payment authorized" is a join of two
streams that arrive in any order, each possibly twice, with the service
restarting in between. A :class:`Join` declared on a service handles its input
types, records each input (the first of each type per key) in the service's
database, and lets exactly one handling complete the join: the one whose atomic
claim on the join's row succeeds once every input is there. A redelivery of
that same event claims it again (its output gets the same id); any other event
finds it claimed. The output's cause is the completing input, and its
``joined`` extension (``ce_joined``) names the other inputs. With a deadline, a
join still incomplete when it passes is claimed by the deadline instead and a
timeout event is published once (again with an id derived from the join).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from choreokit.events._attributes import MAX_ATTRIBUTE_LENGTH
from choreokit.events._context import HandlerContext
from choreokit.events._envelope import Envelope
from choreokit.events._errors import (
    ChoreoError,
    ConfigurationError,
    KeyConflictError,
    PermanentError,
)
from choreokit.events._ids import derived_event_id
from choreokit.events._model import Event
from choreokit.events._service import Service
from choreokit.events.sql._tables import join_inputs, joins

E = TypeVar("E", bound=Event)

logger = logging.getLogger("choreokit.join")

MIN_INPUTS = 2
"""Fewest input types of a join (one is a plain handler)."""

MAX_INPUTS = 8
"""Most input types one join waits for."""

MAX_KEY = 1024
"""Longest join key (a correlation id, or a payload field's value)."""

DEADLINE = "deadline"
"""``claimed_by`` of a join its deadline completed (a timeout event was published)."""

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class Joined:
    """What a join gathered for one key.

    Attributes:
        key: The join key.
        correlation_id: The flow the join belongs to.
        events: The inputs, by event type (all of them for an output; those that
            arrived for a timeout).
        envelopes: Their CloudEvents attributes, by event type.
        completing: The input whose handling completed the join (``None`` for a timeout).
    """

    key: str
    correlation_id: str
    events: Mapping[str, Event]
    envelopes: Mapping[str, Envelope]
    completing: Envelope | None

    def get(self, model: type[E]) -> E:
        """The input of ``model``'s type.

        Raises:
            KeyError: It did not arrive (only possible for a timeout).
        """
        found = self.events[model.event_info().type]
        if not isinstance(found, model):
            raise KeyError(model.event_info().type)
        return found

    def has(self, model: type[Event]) -> bool:
        """Whether the input of ``model``'s type arrived."""
        return model.event_info().type in self.events


Output = Callable[[Joined], Awaitable[Event | None]]
Timeout = Callable[[Joined], Event | None]


class Join:
    """A join over event types per key, declared on a service, completed exactly once.

    Example::

        shipment = Join(
            service,
            "shipment",
            inputs=[StockReserved, PaymentAuthorized],
            engine=engine,
            output=ship,                 # async (Joined) -> Event | None
            deadline=timedelta(minutes=5),
            on_timeout=lambda j: ShipmentFailed(order_id=j.key, failed_step="join", ...),
        )
        app = ServiceApp(service, setup=[shipment.create_tables], tasks=[shipment.run])

    The join handles its input types on ``service`` (one handler per type, named
    ``<name>.<type>``). Each input is recorded in the service's database (the
    first of its type per key; repeats change nothing); once every type is there,
    the handling that claims the join calls ``output`` and publishes its event,
    caused by the completing input and naming the others in ``ce_joined``.

    Args:
        service: The service the join is declared on.
        name: The join's name, unique within the service (part of the output ids).
        inputs: The event classes to wait for (2 to 8 distinct types; older
            versions arrive upcast, as for any handler).
        engine: The service's database (SQLite or PostgreSQL).
        output: Builds the output from what was joined (``None``: publish nothing).
        key: The payload field that keys the join (e.g. ``order_id``, the same
            in every input); ``None`` keys it by correlation id (the flow). An
            input of another flow than the one that opened its key is refused
            (:class:`~choreokit.events.KeyConflictError`, dead-lettered).
        deadline: How long after the first input the others may take.
        on_timeout: The timeout event for a join whose deadline passed (needed
            with ``deadline``); published in the join's flow, caused by the
            first input, naming the other arrived inputs in ``ce_joined``.
        on_input: Awaited with each input and its context before it is
            recorded (bind a business key, validate); raising refuses it.
        on_dead_letter: For an input type, what its handler's ``on_dead_letter``
            would be (see :meth:`Service.handler`).
        check_interval: How often :meth:`run` looks for passed deadlines.

    Raises:
        ConfigurationError: The declaration is inconsistent.
    """

    def __init__(
        self,
        service: Service,
        name: str,
        *,
        inputs: Sequence[type[Event]],
        engine: AsyncEngine,
        output: Output,
        key: str | None = None,
        deadline: timedelta | None = None,
        on_timeout: Timeout | None = None,
        on_input: Callable[[Any, HandlerContext], Awaitable[None]] | None = None,
        on_dead_letter: Mapping[type[Event], Callable[[Any, BaseException], Event | None]]
        | None = None,
        check_interval: timedelta = timedelta(seconds=1),
    ) -> None:
        types = [m.event_info().type for m in inputs]
        if not _NAME.match(name):
            raise ConfigurationError(
                f"join name {name!r} must be 1-64 lowercase letters, digits, '.', '_' or '-'"
            )
        if not MIN_INPUTS <= len(types) <= MAX_INPUTS or len(set(types)) != len(types):
            raise ConfigurationError(
                f"join {name!r} needs {MIN_INPUTS} to {MAX_INPUTS} distinct input types, "
                f"not {types}"
            )
        if (deadline is None) != (on_timeout is None):
            raise ConfigurationError(
                f"join {name!r}: a deadline needs on_timeout (the event to publish), and "
                "on_timeout needs a deadline"
            )
        if deadline is not None and deadline <= timedelta(0):
            raise ConfigurationError(f"join {name!r}: the deadline must be positive")
        if key is not None:
            for model in inputs:
                if key not in model.model_fields:
                    raise ConfigurationError(
                        f"join {name!r} is keyed by {key!r}, which {model.__qualname__} lacks"
                    )
        self.service = service
        self.name = name
        self.inputs = tuple(inputs)
        self.types = tuple(types)
        self.key = key
        self.deadline = deadline
        self._engine = engine
        self._output = output
        self._on_timeout = on_timeout
        self._on_input = on_input
        self._interval = check_interval.total_seconds()
        self._postgres = engine.dialect.name == "postgresql"
        letters = dict(on_dead_letter or {})
        for model in inputs:
            service.handler(
                model, name=f"{name}.{model.event_info().type}", on_dead_letter=letters.get(model)
            )(self._handle)

    # -- handling ----------------------------------------------------------------------------

    def key_of(self, event: Event, envelope: Envelope) -> str:
        """The join key of an input: its ``key`` field, or its flow."""
        value = envelope.correlation_id if self.key is None else str(getattr(event, self.key))
        if not value or len(value) > MAX_KEY:
            raise PermanentError(f"join {self.name!r}: the key must be 1 to {MAX_KEY} characters")
        return value

    async def _handle(self, event: Event, ctx: HandlerContext) -> None:
        if self._on_input is not None:
            await self._on_input(event, ctx)
        envelope = ctx.envelope
        key = self.key_of(event, envelope)
        await self._record(key, event, envelope)
        joined = await self._claim(key, envelope)
        if joined is None:
            return  # still waiting for another input, or completed by another event
        result = await self._output(joined)
        if result is None:
            return
        others = [e.id for t, e in joined.envelopes.items() if t != envelope.type]
        await ctx.publish(result, joined=_joined(self.name, others))

    async def _record(self, key: str, event: Event, envelope: Envelope) -> None:
        now = datetime.now(UTC)
        pk = self._pk(key)
        async with self._engine.begin() as conn:
            await conn.execute(
                self._insert(joins)
                .values(
                    **pk,
                    correlation_id=envelope.correlation_id,
                    opened_by=envelope.id,
                    opened_at=now,
                    deadline_at=None if self.deadline is None else now + self.deadline,
                )
                .on_conflict_do_nothing()
            )
            owner = (
                await conn.execute(select(joins.c.correlation_id).filter_by(**pk))
            ).scalar_one()
            if owner != envelope.correlation_id:
                raise KeyConflictError(f"join {self.name}", key, envelope.correlation_id, owner)
            await conn.execute(
                self._insert(join_inputs)
                .values(
                    **pk,
                    event_type=envelope.type,
                    envelope=json.dumps(envelope.to_dict()),
                    payload=event.model_dump_json(),
                    received_at=now,
                )
                .on_conflict_do_nothing()
            )

    async def _claim(self, key: str, envelope: Envelope) -> Joined | None:
        """Claim the join for ``envelope``'s handling if every input is there (once, atomically).

        The inputs were committed before (:meth:`_record`), so of two inputs
        handled at once the later commit sees both; the conditional update lets
        one claim win, and a redelivery of the winner claim again.
        """
        pk = self._pk(key)
        async with self._engine.begin() as conn:
            arrived = (
                await conn.execute(select(func.count()).select_from(join_inputs).filter_by(**pk))
            ).scalar_one()
            if arrived < len(self.types):
                return None
            claimed = await conn.execute(
                update(joins)
                .filter_by(**pk)
                .where((joins.c.claimed_by.is_(None)) | (joins.c.claimed_by == envelope.id))
                .values(claimed_by=envelope.id, claimed_at=datetime.now(UTC))
                .returning(joins.c.correlation_id)
            )
            correlation = claimed.scalar_one_or_none()
            if correlation is None:
                return None
            return await self._joined(conn, key, correlation, envelope)

    async def _joined(
        self, conn: AsyncConnection, key: str, correlation: str, completing: Envelope | None
    ) -> Joined:
        rows = await conn.execute(
            select(
                join_inputs.c.event_type, join_inputs.c.envelope, join_inputs.c.payload
            ).filter_by(**self._pk(key))
        )
        models = dict(zip(self.types, self.inputs, strict=True))
        events: dict[str, Event] = {}
        envelopes: dict[str, Envelope] = {}
        for row in rows:
            model = models.get(row.event_type)
            if model is None:
                continue  # an input type this join no longer declares
            events[row.event_type] = model.model_validate_json(row.payload)
            envelopes[row.event_type] = Envelope.from_dict(json.loads(row.envelope))
        order = {t: i for i, t in enumerate(self.types)}
        return Joined(
            key=key,
            correlation_id=correlation,
            events=dict(sorted(events.items(), key=lambda kv: order[kv[0]])),
            envelopes=dict(sorted(envelopes.items(), key=lambda kv: order[kv[0]])),
            completing=completing,
        )

    # -- deadlines ---------------------------------------------------------------------------

    async def expire(self, now: datetime | None = None, limit: int = 100) -> int:
        """Publish the timeout event of every join whose deadline passed; return how many.

        A join is claimed by the deadline atomically (an input completing it at
        the same moment wins or loses as a whole), then its timeout event is sent
        and marked sent. Claimed but unsent timeouts (a crash in between) are
        sent again with the same id.
        """
        if self._on_timeout is None:
            return 0
        moment = now or datetime.now(UTC)
        base = {"consumer": self.service.name, "join_name": self.name}
        async with self._engine.begin() as conn:
            await conn.execute(
                update(joins)
                .filter_by(**base)
                .where(joins.c.claimed_by.is_(None), joins.c.deadline_at <= moment)
                .values(claimed_by=DEADLINE, claimed_at=moment)
            )
            due = (
                await conn.execute(
                    select(joins.c.join_key, joins.c.correlation_id, joins.c.opened_by)
                    .filter_by(**base, claimed_by=DEADLINE)
                    .where(joins.c.timeout_sent_at.is_(None))
                    .order_by(joins.c.deadline_at)
                    .limit(limit)
                )
            ).all()
        sent = 0
        for row in due:
            async with self._engine.connect() as conn:
                joined = await self._joined(conn, row.join_key, row.correlation_id, None)
            timeout = self._on_timeout(joined)
            if timeout is not None:
                others = [e.id for e in joined.envelopes.values() if e.id != row.opened_by]
                await self.service.publisher.publish(
                    timeout,
                    correlation_id=row.correlation_id,
                    causation_id=row.opened_by,
                    event_id=derived_event_id(row.opened_by, f"{self.service.name}/{self.name}", 0),
                    joined=",".join(_joined(self.name, others)) or None,
                )
            async with self._engine.begin() as conn:
                await conn.execute(
                    update(joins)
                    .filter_by(**self._pk(row.join_key))
                    .values(timeout_sent_at=datetime.now(UTC))
                )
            sent += 1
        return sent

    async def run(self, stop: asyncio.Event) -> None:
        """Publish timeout events as deadlines pass, until ``stop`` is set (a ServiceApp task)."""
        if self._on_timeout is None:
            return
        while not stop.is_set():
            try:
                await self.expire()
            except (SQLAlchemyError, OSError, ChoreoError) as exc:
                logger.warning("join %s: deadline check failed (%s); trying again", self.name, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._interval)

    async def create_tables(self) -> None:
        """Create the join tables (with the rest of ``choreokit.events.sql``'s) if missing."""
        from choreokit.events.sql._tables import create_tables

        await create_tables(self._engine)

    def _pk(self, key: str) -> dict[str, str]:
        return {"consumer": self.service.name, "join_name": self.name, "join_key": key}

    def _insert(self, table: Any) -> Any:
        return (postgresql if self._postgres else sqlite).insert(table)


def _joined(name: str, ids: Sequence[str]) -> list[str]:
    if len(",".join(ids)) > MAX_ATTRIBUTE_LENGTH:
        raise PermanentError(
            f"join {name!r}: the joined inputs' ids are longer than {MAX_ATTRIBUTE_LENGTH} "
            "characters together, more than the ce_joined attribute may carry"
        )
    return list(ids)
