"""Fields marked sensitive (redacted wherever a payload is kept or shown) or safe to log.

Mark a field in its model::

    class OrderPlaced(Event, type="order.placed", version=2, topic="orders"):
        order_id: str
        email: Annotated[str | None, Sensitive] = None

The mark is part of the field's JSON Schema (``"x-sensitive": true``; ``"x-log-safe":
true`` for :data:`LogSafe`), so producers in other languages and ``schemas/`` see it.
:func:`redact` replaces the values of sensitive fields, in nested models and lists too.
"""

from __future__ import annotations

from typing import Any, Final, get_args, get_origin

from pydantic import BaseModel, GetJsonSchemaHandler
from pydantic.fields import FieldInfo
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, ErrorDetails

SENSITIVE_KEY: Final = "x-sensitive"
"""The JSON Schema keyword a sensitive field carries (``true``)."""

LOG_SAFE_KEY: Final = "x-log-safe"
"""The JSON Schema keyword a field safe to show in spans and logs carries (``true``)."""

REDACTED: Final = "[redacted]"
"""What a sensitive field's value is replaced with."""


class _Mark:
    """A field mark: adds its keyword to the field's JSON Schema; see :data:`Sensitive`."""

    __slots__ = ("_key", "_name")

    def __init__(self, name: str, key: str) -> None:
        self._name = name
        self._key = key

    def __repr__(self) -> str:
        return self._name

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        schema[self._key] = True
        return schema


Sensitive: Final = _Mark("Sensitive", SENSITIVE_KEY)
"""``Annotated[str, Sensitive]``: personal or secret data, redacted by the observer, kept out
of error bodies, spans and logs."""

LogSafe: Final = _Mark("LogSafe", LOG_SAFE_KEY)
"""``Annotated[str, LogSafe]``: a value that may appear in spans, logs and error bodies."""


def _marked(field: FieldInfo, mark: _Mark) -> bool:
    if any(m is mark for m in field.metadata):
        return True
    extra = field.json_schema_extra
    return isinstance(extra, dict) and extra.get(mark._key) is True


def sensitive_fields(model: type[BaseModel]) -> frozenset[str]:
    """The names of ``model``'s own fields marked :data:`Sensitive`."""
    return frozenset(n for n, f in model.model_fields.items() if _marked(f, Sensitive))


def log_safe_fields(model: type[BaseModel]) -> frozenset[str]:
    """The names of ``model``'s own fields marked :data:`LogSafe`."""
    return frozenset(n for n, f in model.model_fields.items() if _marked(f, LogSafe))


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin = get_origin(annotation)
    if origin is None:
        return []
    found: list[type[BaseModel]] = []
    for arg in get_args(annotation):
        found += _models_in(arg)
    return found


def has_sensitive(model: type[BaseModel], _seen: frozenset[type] = frozenset()) -> bool:
    """Whether ``model`` or a model nested in it has a field marked :data:`Sensitive`."""
    if model in _seen:
        return False
    if sensitive_fields(model):
        return True
    return any(
        has_sensitive(inner, _seen | {model})
        for field in model.model_fields.values()
        for inner in _models_in(field.annotation)
    )


def redact(model: type[BaseModel], data: Any) -> Any:
    """A copy of the JSON value ``data`` (as ``model`` reads it) with sensitive values replaced.

    Sensitive fields become :data:`REDACTED` (``null`` stays ``null``); nested models, and
    lists or dicts of them, are redacted in turn. Members ``model`` does not know are kept.
    """
    if not isinstance(data, dict):
        return data
    result = dict(data)
    for name, field in model.model_fields.items():
        key = field.alias or name
        if key not in result:
            continue
        value = result[key]
        if _marked(field, Sensitive):
            result[key] = None if value is None else REDACTED
            continue
        inner = _models_in(field.annotation)
        if len(inner) == 1:
            result[key] = _redact_nested(inner[0], value)
    return result


def _redact_nested(model: type[BaseModel], value: Any) -> Any:
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value) and any(
            (f.alias or n) in value for n, f in model.model_fields.items()
        ):
            return redact(model, value)
        return {k: _redact_nested(model, v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_nested(model, v) for v in value]
    return value


def _field_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> FieldInfo | None:
    current: type[BaseModel] | None = model
    field: FieldInfo | None = None
    for part in loc:
        if isinstance(part, int) or current is None:
            continue
        field = current.model_fields.get(part) or next(
            (f for f in current.model_fields.values() if f.alias == part), None
        )
        if field is None:
            return None
        inner = _models_in(field.annotation)
        current = inner[0] if len(inner) == 1 else None
    return field


def error_text(error: ErrorDetails, model: type[BaseModel] | None = None) -> str:
    """A pydantic error's message without the input it refused.

    The message drops any text of the refused input (a validator may quote it); at a field
    of ``model`` marked :data:`Sensitive`, only the rule broken is said.
    """
    message = error["msg"]
    if model is not None:
        field = _field_at(model, tuple(error["loc"]))
        if field is not None and _marked(field, Sensitive):
            return f"the value does not validate ({error['type']}; not shown: sensitive)"
        if field is not None and _marked(field, LogSafe):
            return message
    value = error.get("input")
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        text = str(value)
        if len(text) >= 3 and text in message:  # noqa: PLR2004 - shorter texts are words
            message = message.replace(text, "…")
    return message
