"""The language-neutral contract: a JSON Schema per (type, version), and compatibility rules.

Within a major version, readers and writers upgrade independently, so a change
must keep both directions working:

* a *reader* built from the new schema must accept what *writers* of the
  committed schema send: no field may become required, no type may narrow;
* *writers* built from the new schema must send what committed *readers*
  accept: no required field may disappear or become optional, no type may widen.

Adding or removing an optional field keeps both (readers ignore fields they do
not know). Anything else needs a new major version and an upcaster.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from choreokit.events._model import Event
from choreokit.events._registry import Registry

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
_ANNOTATIONS = frozenset(
    {"title", "description", "default", "examples", "$comment", "x-sensitive", "x-log-safe"}
)
"""Keywords that say something of a value but change no reader's or writer's shape."""
_MAX_DEPTH = 32


def schema_path(event_type: str, version: int) -> Path:
    """Return where the schema of ``event_type`` at ``version`` lives, relative to ``schemas/``."""
    return Path(event_type) / f"v{version}.json"


def schema_document(model: type[Event]) -> dict[str, Any]:
    """Return the JSON Schema document of an event model's payload."""
    info = model.event_info()
    schema = model.model_json_schema(mode="validation")
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": f"{info.type}/v{info.version}.json",
        "x-cloudevents": {
            "type": info.type,
            "dataversion": str(info.version),
            "topic": info.topic,
            "datacontenttype": "application/json",
        },
        **schema,
    }


def render(document: dict[str, Any]) -> str:
    """Serialise a document the same way every time (stable diffs)."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def schema_documents(registry: Registry) -> dict[Path, str]:
    """Return every registered model's schema, rendered, by relative path."""
    out: dict[Path, str] = {}
    for model in registry:
        info = model.event_info()
        out[schema_path(info.type, info.version)] = render(schema_document(model))
    return out


class Breaks(StrEnum):
    """Whom an incompatible change breaks."""

    READERS = "readers"
    WRITERS = "writers"
    BOTH = "readers and writers"


@dataclass(frozen=True, slots=True)
class Incompatibility:
    """One change that needs a new major version.

    Attributes:
        field: Dotted path of the field (``(root)`` for the document).
        change: What changed, in words.
        breaks: Who would fail on it.
    """

    field: str
    change: str
    breaks: Breaks

    def __str__(self) -> str:
        return f"field {self.field!r} {self.change} (breaks {self.breaks})"


def incompatibilities(old: dict[str, Any], new: dict[str, Any]) -> list[Incompatibility]:
    """List the changes from ``old`` to ``new`` that break readers or writers."""
    comparison = _Comparison(_Resolver(old), _Resolver(new))
    comparison.compare(old, new, "")
    return comparison.found


class _Resolver:
    def __init__(self, document: dict[str, Any]) -> None:
        self._defs: dict[str, Any] = document.get("$defs", {})

    def resolve(self, schema: Any, depth: int = 0) -> Any:
        while isinstance(schema, dict) and "$ref" in schema and depth < _MAX_DEPTH:
            ref = schema["$ref"]
            name = ref.rsplit("/", 1)[-1]
            schema = {
                **self._defs.get(name, {}),
                **{k: v for k, v in schema.items() if k != "$ref"},
            }
            depth += 1
        return schema

    def canonical(self, schema: Any, depth: int = 0) -> Any:
        schema = self.resolve(schema)
        if depth > _MAX_DEPTH:
            return schema
        if isinstance(schema, dict):
            return {
                k: self.canonical(v, depth + 1)
                for k, v in sorted(schema.items())
                if k not in _ANNOTATIONS
            }
        if isinstance(schema, list):
            return [self.canonical(v, depth + 1) for v in schema]
        return schema


def _is_object(schema: Any) -> bool:
    return isinstance(schema, dict) and "properties" in schema


class _Comparison:
    def __init__(self, old: _Resolver, new: _Resolver) -> None:
        self._old = old
        self._new = new
        self.found: list[Incompatibility] = []

    def _add(self, path: str, change: str, breaks: Breaks) -> None:
        self.found.append(Incompatibility(path or "(root)", change, breaks))

    def compare(self, old: Any, new: Any, path: str) -> None:
        old, new = self._old.resolve(old), self._new.resolve(new)
        if _is_object(old) and _is_object(new):
            self._objects(old, new, path)
        elif _is_array(old) and _is_array(new):
            self.compare(old["items"], new["items"], f"{path}[]")
            rest_old = {k: v for k, v in old.items() if k != "items"}
            rest_new = {k: v for k, v in new.items() if k != "items"}
            if self._old.canonical(rest_old) != self._new.canonical(rest_new):
                self._add(path, "changed type", Breaks.BOTH)
        elif self._old.canonical(old) != self._new.canonical(new):
            self._add(path, "changed type", Breaks.BOTH)

    def _objects(self, old: dict[str, Any], new: dict[str, Any], path: str) -> None:
        old_props: dict[str, Any] = old["properties"]
        new_props: dict[str, Any] = new["properties"]
        old_req, new_req = set(old.get("required", ())), set(new.get("required", ()))
        for name in sorted(old_props):
            where = f"{path}.{name}" if path else name
            if name not in new_props:
                if name in old_req:
                    self._add(where, "was removed while required", Breaks.WRITERS)
                continue
            if name in old_req and name not in new_req:
                self._add(where, "was made optional", Breaks.WRITERS)
            elif name not in old_req and name in new_req:
                self._add(where, "was made required", Breaks.READERS)
            self.compare(old_props[name], new_props[name], where)
        for name in sorted(set(new_props) - set(old_props)):
            if name in new_req:
                where = f"{path}.{name}" if path else name
                self._add(where, "was added as required", Breaks.READERS)


def _is_array(schema: Any) -> bool:
    return isinstance(schema, dict) and schema.get("type") == "array" and "items" in schema


@dataclass(frozen=True, slots=True)
class SchemaProblem:
    """Something ``choreo schemas check`` fails on.

    Attributes:
        path: The schema file, relative to ``schemas/``.
        message: What is wrong and what to do.
        incompatible: Whether the committed version was changed incompatibly (its
            readers and writers are affected; see :func:`contract_users`).
    """

    path: Path
    message: str
    incompatible: bool = False

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def check_schemas(registry: Registry, directory: Path) -> list[SchemaProblem]:
    """Compare the committed schemas in ``directory`` with the registry's models."""
    problems: list[SchemaProblem] = []
    generated = schema_documents(registry)
    for rel, text in sorted(generated.items()):
        committed_file = directory / rel
        label = f"{rel.parent.name} {rel.stem}"
        if not committed_file.exists():
            problems.append(
                SchemaProblem(rel, f"{label} is not exported; run 'choreo schemas export'")
            )
            continue
        committed_text = committed_file.read_text()
        if committed_text == text:
            continue
        try:
            committed = json.loads(committed_text)
        except ValueError as exc:
            problems.append(SchemaProblem(rel, f"is not valid JSON ({exc})"))
            continue
        broken = incompatibilities(committed, json.loads(text))
        if broken:
            problems.extend(
                SchemaProblem(
                    rel,
                    f"{label}: {item}; keep the committed contract or declare a new major version",
                    incompatible=True,
                )
                for item in broken
            )
        else:
            problems.append(
                SchemaProblem(
                    rel, f"{label} is stale (compatible change); run 'choreo schemas export'"
                )
            )
    for committed_file in sorted(directory.glob("*/v*.json")):
        rel = committed_file.relative_to(directory)
        if rel not in generated:
            problems.append(
                SchemaProblem(
                    rel,
                    f"{rel.parent.name} {rel.stem} is committed but no longer declared; "
                    "records of that version could no longer be read: restore its model",
                )
            )
    return problems


def export_schemas(
    registry: Registry, directory: Path, *, force: bool = False
) -> tuple[list[Path], list[SchemaProblem]]:
    """Write every schema into ``directory``.

    A committed version is never overwritten with an incompatible schema unless
    ``force`` is set.

    Returns:
        The files written, and the incompatible ones left alone.
    """
    written: list[Path] = []
    refused: list[SchemaProblem] = []
    for rel, text in sorted(schema_documents(registry).items()):
        target = directory / rel
        if target.exists():
            current = target.read_text()
            if current == text:
                continue
            if not force:
                try:
                    broken = incompatibilities(json.loads(current), json.loads(text))
                except ValueError:
                    broken = []
                if broken:
                    refused.extend(
                        SchemaProblem(rel, f"{item}; not overwritten (use --force to replace)")
                        for item in broken
                    )
                    continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        written.append(rel)
    return written, refused
