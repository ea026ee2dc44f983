"""The compatibility check in the words of the contract: readers and writers are told apart, and
adding or removing an optional field within a version is compatible (nested ones too)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from choreokit.events import Event, Registry
from choreokit.events._contract import check_schemas, export_schemas


class Address(BaseModel):
    city: str
    note: str | None = None


class AddressWithoutNote(BaseModel):
    city: str


class AddressWithZone(BaseModel):
    city: str
    note: str | None = None
    zone: int | None = None


def declare(reg: Registry, **fields: tuple[object, object]) -> None:
    annotations = {name: ann for name, (ann, _) in fields.items()}
    namespace: dict[str, object] = {"__annotations__": annotations}
    namespace.update({name: d for name, (_, d) in fields.items() if d is not ...})
    type("Parcel", (Event,), namespace, type="parcel.sent", topic="parcels", registry=reg)


BASE: dict[str, tuple[object, object]] = {
    "id": (str, ...),
    "weight": (int, ...),
    "label": (str | None, None),
    "to": (Address, ...),
}


def problems_after(tmp_path: Path, **changed: tuple[object, object]) -> list[str]:
    old = Registry()
    declare(old, **BASE)
    export_schemas(old, tmp_path)
    new = Registry()
    declare(new, **changed)
    return [p.message for p in check_schemas(new, tmp_path)]


def test_removing_an_optional_field_is_a_compatible_change(tmp_path: Path) -> None:
    without_label = {k: v for k, v in BASE.items() if k != "label"}
    [message] = problems_after(tmp_path, **without_label)
    assert "stale (compatible change)" in message


def test_adding_an_optional_field_is_a_compatible_change(tmp_path: Path) -> None:
    [message] = problems_after(tmp_path, **BASE, colour=(str | None, None))
    assert "stale (compatible change)" in message


def test_adding_or_removing_an_optional_nested_field_is_compatible(tmp_path: Path) -> None:
    [removed] = problems_after(tmp_path, **{**BASE, "to": (AddressWithoutNote, ...)})
    assert "stale (compatible change)" in removed
    [added] = problems_after(tmp_path / "again", **{**BASE, "to": (AddressWithZone, ...)})
    assert "stale (compatible change)" in added


def test_a_new_requirement_is_said_to_break_readers(tmp_path: Path) -> None:
    messages = problems_after(tmp_path, **{**BASE, "label": (str, ...)})
    assert any("'label' was made required (breaks readers)" in m for m in messages)


def test_a_lost_requirement_is_said_to_break_writers(tmp_path: Path) -> None:
    messages = problems_after(tmp_path, **{**BASE, "weight": (int | None, None)})
    assert any("'weight' was made optional (breaks writers)" in m for m in messages)


def test_a_changed_type_is_said_to_break_both(tmp_path: Path) -> None:
    messages = problems_after(tmp_path, **{**BASE, "weight": (str, ...)})
    assert any("'weight' changed type (breaks readers and writers)" in m for m in messages)
