"""Hypothesis strategies drawn from an event's JSON Schema (the exported contract).

Enough of JSON Schema for what pydantic emits for our models: objects with
``$ref``/``$defs``, strings with lengths, patterns, enums and ``date-time``,
bounded integers, arrays, ``anyOf`` for optional fields.
"""

from __future__ import annotations

from datetime import UTC, timedelta, timezone
from typing import Any

from hypothesis import strategies as st

from choreokit.events import MAX_TIME, MIN_TIME

_TEXT = st.characters(codec="utf-8", exclude_categories=["Cs"])
_OFFSETS = st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59).map(
    lambda m: timezone(timedelta(minutes=m))
)


def _times() -> st.SearchStrategy[str]:
    inner = st.datetimes(
        min_value=MIN_TIME.replace(tzinfo=None) + timedelta(days=1),
        max_value=MAX_TIME.replace(tzinfo=None) - timedelta(days=1),
        timezones=st.just(UTC),
    )
    return st.tuples(inner, _OFFSETS).map(lambda p: p[0].astimezone(p[1]).isoformat())


def from_schema(schema: dict[str, Any], root: dict[str, Any] | None = None) -> Any:  # noqa: PLR0911 - one answer per schema keyword
    """A strategy for JSON documents valid against ``schema`` (refs resolved in ``root``)."""
    root = root or schema
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return from_schema(root["$defs"][name], root)
    if "anyOf" in schema:
        return st.one_of([from_schema(s, root) for s in schema["anyOf"]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "const" in schema:
        return st.just(schema["const"])
    kind = schema.get("type")
    if kind == "null":
        return st.none()
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        low = schema.get("minimum", schema.get("exclusiveMinimum", -(2**70) - 1) + 1)
        high = schema.get("maximum", schema.get("exclusiveMaximum", 2**70 + 1) - 1)
        return st.integers(min_value=low, max_value=high)
    if kind == "string":
        if schema.get("format") == "date-time":
            return _times()
        if "pattern" in schema:
            return st.from_regex(schema["pattern"], fullmatch=True)
        return st.text(
            _TEXT,
            min_size=schema.get("minLength", 0),
            max_size=min(schema.get("maxLength", 80), 80),
        )
    if kind == "array":
        return st.lists(
            from_schema(schema["items"], root),
            min_size=schema.get("minItems", 0),
            max_size=min(schema.get("maxItems", 5), 5),
        )
    if kind == "object":
        properties: dict[str, Any] = schema.get("properties", {})
        required = set(schema.get("required", ()))
        fixed = {k: from_schema(v, root) for k, v in properties.items() if k in required}
        optional = {k: from_schema(v, root) for k, v in properties.items() if k not in required}
        return st.fixed_dictionaries(fixed, optional=optional)
    raise NotImplementedError(f"no strategy for the schema {schema!r}")


def json_values() -> st.SearchStrategy[Any]:
    """Any JSON value, integers beyond 64 bits and odd strings included."""
    scalars = (
        st.none()
        | st.booleans()
        | st.integers(min_value=-(2**80), max_value=2**80)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(_TEXT, max_size=40)
    )
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
        max_leaves=12,
    )
