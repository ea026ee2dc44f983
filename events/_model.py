"""The :class:`Event` base: a frozen pydantic model bound to a type, a version and a topic."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, ClassVar, Protocol

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict

from choreokit.events._attributes import MAX_TIME, MIN_TIME
from choreokit.events._errors import SchemaError

_TYPE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_TOPIC_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


def _in_range(value: datetime) -> datetime:
    if not MIN_TIME <= value < MAX_TIME:
        raise ValueError("must be within the years 1970 to 2199")
    return value


EventTime = Annotated[AwareDatetime, AfterValidator(_in_range)]
"""A payload timestamp: with a UTC offset, within the years the event layer accepts
(:data:`MIN_TIME` .. :data:`MAX_TIME`), like an envelope's ``time``."""


@dataclass(frozen=True, slots=True)
class EventInfo:
    """What an event class is bound to on the wire.

    Attributes:
        type: The CloudEvents ``type`` without version, e.g. ``order.placed``.
        version: The schema's major version (``ce_dataversion``).
        topic: The Kafka topic events of this type are published to.
    """

    type: str
    version: int
    topic: str

    def __str__(self) -> str:
        return f"{self.type} v{self.version}"


class Registrar(Protocol):
    """Where an event class registers itself when declared: a ``Registry``.

    A protocol, so that the model does not import the registry that imports it.
    """

    def register(self, model: type[Event]) -> None:
        """Add an event class."""


class Event(BaseModel):
    """Base class for event payloads: one subclass per (type, major version).

    Declare the binding with class keywords::

        class OrderPlaced(Event, type="order.placed", version=1, topic="orders"):
            order_id: str
            quantity: int

    Within a major version, fields may only be added, and only as optional
    fields; anything else is a new major version with an upcaster from the old
    one. Instances are frozen values and ignore unknown fields, so an older
    reader accepts what a newer writer of the same version sends.

    A subclass without ``type=`` is abstract: it shares fields but is not
    registered.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    __event__: ClassVar[EventInfo | None] = None
    __event_registry__: ClassVar[Registrar | None] = None
    __default_registry__: ClassVar[Registrar | None] = None
    """The registry classes join unless they name one: ``default_registry``, set where
    it is created (importing ``choreokit.events`` does that)."""

    def __init_subclass__(
        cls,
        *,
        type: str | None = None,  # noqa: A002 - mirrors the CloudEvents attribute name
        version: int = 1,
        topic: str | None = None,
        registry: Registrar | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init_subclass__(**kwargs)
        if type is None:
            if topic is not None:
                raise SchemaError(f"{cls.__name__} names a topic but no type; add type=...")
            return
        if not _TYPE_PATTERN.match(type):
            raise SchemaError(
                f"{cls.__name__}: event type {type!r} must be letters, digits, '.', '_' or '-'"
            )
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise SchemaError(f"{cls.__name__}: version must be an integer >= 1, not {version!r}")
        if topic is None or not _TOPIC_PATTERN.match(topic):
            raise SchemaError(
                f"{cls.__name__}: topic {topic!r} is not a valid Kafka topic name "
                "(1-249 of letters, digits, '.', '_', '-')"
            )
        cls.__event__ = EventInfo(type=type, version=version, topic=topic)
        if registry is None:
            registry = Event.__default_registry__
            if registry is None:
                raise SchemaError(
                    f"{cls.__name__} is declared before choreokit's default registry exists: "
                    "import Event from choreokit.events (or pass registry=...)"
                )
        cls.__event_registry__ = registry

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        # Registration waits until pydantic has finished building the model.
        super().__pydantic_init_subclass__(**kwargs)
        if "__event__" in cls.__dict__ and cls.__event_registry__ is not None:
            cls.__event_registry__.register(cls)

    @classmethod
    def event_info(cls) -> EventInfo:
        """Return the type, version and topic this class is bound to.

        Raises:
            SchemaError: The class is abstract (declared without ``type=``).
        """
        info = cls.__dict__.get("__event__")
        if info is None:
            raise SchemaError(f"{cls.__name__} is abstract: declare it with type=..., topic=...")
        assert isinstance(info, EventInfo)
        return info
