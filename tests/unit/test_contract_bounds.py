"""Every field of every declared event (the example's and the observer's own) is bounded in
its published schema: integers have a range, strings a length, a pattern, an enum or a
format, arrays a length. A new unbounded field fails here before it can outgrow a store."""

from __future__ import annotations

from typing import Any

import pytest

from choreokit.events import Event, default_registry
from choreokit.events._contract import schema_document
from choreokit.services.runtime.discovery import load_event_modules

load_event_modules()
MODELS = sorted(default_registry, key=lambda m: str(m.event_info()))


def unbounded(schema: Any, root: dict[str, Any], path: str) -> list[str]:
    if not isinstance(schema, dict):
        return []
    if "$ref" in schema:
        return unbounded(root["$defs"][schema["$ref"].rsplit("/", 1)[-1]], root, path)
    if "anyOf" in schema:
        return [p for s in schema["anyOf"] for p in unbounded(s, root, path)]
    if "enum" in schema or "const" in schema:
        return []
    kind = schema.get("type")
    found: list[str] = []
    if kind == "integer":
        low = "minimum" in schema or "exclusiveMinimum" in schema
        high = "maximum" in schema or "exclusiveMaximum" in schema
        if not (low and high):
            found.append(f"{path}: an integer without a range")
    elif kind == "string":
        if not {"maxLength", "pattern", "format"} & schema.keys():
            found.append(f"{path}: a string without a length")
    elif kind == "array":
        if "maxItems" not in schema:
            found.append(f"{path}: an array without a length")
        found += unbounded(schema.get("items"), root, f"{path}[]")
    elif kind == "object":
        for name, sub in schema.get("properties", {}).items():
            found += unbounded(sub, root, f"{path}.{name}" if path else name)
    return found


@pytest.mark.parametrize("model", MODELS, ids=lambda m: str(m.event_info()))
def test_every_field_is_bounded(model: type[Event]) -> None:
    document = schema_document(model)
    assert unbounded(document, document, "") == []


def test_an_unbounded_field_is_found() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}, "s": {"type": "string"}}}
    assert unbounded(schema, schema, "") == [
        "n: an integer without a range",
        "s: a string without a length",
    ]
