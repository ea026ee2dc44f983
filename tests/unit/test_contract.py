"""JSON Schema export and the compatibility check behind 'choreo schemas check'."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import BaseModel, Field

from choreokit.events import Event, Registry
from choreokit.events._contract import (
    Breaks,
    check_schemas,
    export_schemas,
    incompatibilities,
    schema_document,
)


class Inner(BaseModel):
    code: str
    note: str | None = None


def doc(**fields: tuple[object, object]) -> dict[str, object]:
    """The schema of a one-off model with ``fields`` as (annotation, default-or-...)."""
    reg = Registry()
    annotations = {name: ann for name, (ann, _) in fields.items()}
    namespace: dict[str, object] = {"__annotations__": annotations}
    namespace.update({name: d for name, (_, d) in fields.items() if d is not ...})
    model = type("M", (Event,), namespace, type="m.made", topic="ms", registry=reg)
    return schema_document(model)


BASE = {"id": (str, ...), "qty": (int, ...), "note": (str | None, None)}


def test_the_document_names_its_cloudevents_binding() -> None:
    document = doc(**BASE)
    assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert document["x-cloudevents"] == {
        "type": "m.made",
        "dataversion": "1",
        "topic": "ms",
        "datacontenttype": "application/json",
    }
    assert document["required"] == ["id", "qty"]


def test_adding_or_removing_an_optional_field_is_compatible() -> None:
    assert incompatibilities(doc(**BASE), doc(**BASE, extra=(int | None, None))) == []
    without_note = {k: v for k, v in BASE.items() if k != "note"}
    assert incompatibilities(doc(**BASE), doc(**without_note)) == []


def test_removing_a_required_field_breaks_writers() -> None:
    found = incompatibilities(doc(**BASE), doc(id=(str, ...), note=(str | None, None)))
    assert [(i.field, i.breaks) for i in found] == [("qty", Breaks.WRITERS)]
    assert "removed while required" in str(found[0])


def test_making_a_field_required_breaks_readers() -> None:
    found = incompatibilities(doc(**BASE), doc(**{**BASE, "note": (str, ...)}))
    assert ("note", Breaks.READERS) in [(i.field, i.breaks) for i in found]
    assert any("made required" in str(i) for i in found)


def test_adding_a_required_field_breaks_readers() -> None:
    found = incompatibilities(doc(**BASE), doc(**BASE, must=(int, ...)))
    assert [(i.field, i.change) for i in found] == [("must", "was added as required")]


def test_making_a_required_field_optional_breaks_writers() -> None:
    found = incompatibilities(doc(**BASE), doc(**{**BASE, "qty": (int | None, None)}))
    assert ("qty", "was made optional") in [(i.field, i.change) for i in found]


def test_retyping_a_field_breaks_both() -> None:
    found = incompatibilities(doc(**BASE), doc(**{**BASE, "qty": (str, ...)}))
    assert [(i.field, i.breaks) for i in found] == [("qty", Breaks.BOTH)]


def test_nested_models_are_compared_field_by_field() -> None:
    class Inner2(BaseModel):
        code: int
        note: str | None = None

    old = doc(**BASE, inner=(Inner, ...))
    assert incompatibilities(old, doc(**BASE, inner=(Inner2, ...)))[0].field == "inner.code"

    class Inner3(BaseModel):
        code: str
        note: str | None = None
        more: int = 0

    assert incompatibilities(old, doc(**BASE, inner=(Inner3, ...))) == []


def test_array_items_are_compared() -> None:
    old = doc(**BASE, tags=(tuple[str, ...], ()))
    found = incompatibilities(old, doc(**BASE, tags=(tuple[int, ...], ())))
    assert [i.field for i in found] == ["tags[]"]


def test_descriptions_and_titles_do_not_matter() -> None:
    old = doc(**BASE)
    described = doc(**{**BASE, "qty": (int, Field(description="how many"))})
    assert incompatibilities(old, described) == []


def declare(reg: Registry, **fields: tuple[object, object]) -> None:
    annotations = {name: ann for name, (ann, _) in fields.items()}
    namespace: dict[str, object] = {"__annotations__": annotations}
    namespace.update({name: d for name, (_, d) in fields.items() if d is not ...})
    type("Thing", (Event,), namespace, type="thing.made", topic="things", registry=reg)


def test_check_passes_on_a_fresh_export(tmp_path: Path) -> None:
    reg = Registry()
    declare(reg, **BASE)
    written, refused = export_schemas(reg, tmp_path)
    assert [str(p) for p in written] == ["thing.made/v1.json"]
    assert refused == []
    assert check_schemas(reg, tmp_path) == []
    assert json.loads((tmp_path / "thing.made/v1.json").read_text())["title"] == "Thing"


def test_check_names_a_missing_export(tmp_path: Path) -> None:
    reg = Registry()
    declare(reg, **BASE)
    [problem] = check_schemas(reg, tmp_path)
    assert "not exported" in problem.message


def test_check_calls_a_compatible_change_stale(tmp_path: Path) -> None:
    old = Registry()
    declare(old, **BASE)
    export_schemas(old, tmp_path)
    new = Registry()
    declare(new, **BASE, extra=(int | None, None))
    [problem] = check_schemas(new, tmp_path)
    assert "stale" in problem.message


@pytest.mark.parametrize(
    ("changed", "words"),
    [
        ({"id": (str, ...), "note": (str | None, None)}, "'qty' was removed while required"),
        ({**BASE, "qty": (float, ...)}, "'qty' changed type"),
        ({**BASE, "note": (str, ...)}, "'note' was made required"),
    ],
)
def test_check_names_type_version_and_field_of_an_incompatible_change(
    tmp_path: Path, changed: dict[str, tuple[object, object]], words: str
) -> None:
    old = Registry()
    declare(old, **BASE)
    export_schemas(old, tmp_path)
    new = Registry()
    declare(new, **changed)
    problems = check_schemas(new, tmp_path)
    assert problems
    assert any("thing.made v1" in p.message and words in p.message for p in problems)
    written, refused = export_schemas(new, tmp_path)
    assert written == []
    assert refused
    assert problems == check_schemas(new, tmp_path)
    written, _ = export_schemas(new, tmp_path, force=True)
    assert written


def test_check_refuses_a_version_that_disappeared(tmp_path: Path) -> None:
    reg = Registry()
    declare(reg, **BASE)
    export_schemas(reg, tmp_path)
    (tmp_path / "thing.made" / "v2.json").write_text("{}")
    [problem] = check_schemas(reg, tmp_path)
    assert "no longer declared" in problem.message
