"""Event declarations, the registry, and upcasting chains."""

import pytest
from pydantic import ValidationError

from choreokit.events import (
    Event,
    MissingUpcasterError,
    Registry,
    SchemaError,
    UnknownEventTypeError,
    UnknownEventVersionError,
    VersionTooNewError,
)


def make_versions(reg: Registry) -> tuple[type[Event], type[Event], type[Event]]:
    class V1(Event, type="item.added", version=1, topic="items", registry=reg):
        name: str

    class V2(Event, type="item.added", version=2, topic="items", registry=reg):
        name: str
        count: int

    class V3(Event, type="item.added", version=3, topic="items", registry=reg):
        title: str
        count: int
        tags: tuple[str, ...] = ()

    return V1, V2, V3


def test_declaration_binds_type_version_and_topic() -> None:
    reg = Registry()
    v1, v2, _ = make_versions(reg)
    assert v2.event_info().type == "item.added"
    assert v2.event_info().version == 2
    assert v2.event_info().topic == "items"
    assert reg.model("item.added", 1) is v1
    assert reg.versions("item.added") == (1, 2, 3)
    assert reg.types() == ("item.added",)
    assert len(reg) == 3


def test_events_are_frozen_and_ignore_unknown_fields() -> None:
    reg = Registry()
    v1, _, _ = make_versions(reg)
    event = v1.model_validate({"name": "a", "added_later": True})
    assert event == v1.model_validate({"name": "a"})
    with pytest.raises(ValidationError):
        event.name = "b"  # type: ignore[attr-defined]


def test_abstract_base_is_not_registered() -> None:
    reg = Registry()

    class Base(Event):
        shared: str = ""

    class Concrete(Base, type="c.made", topic="cs", registry=reg):
        pass

    assert reg.types() == ("c.made",)
    with pytest.raises(SchemaError, match="abstract"):
        Base.event_info()
    assert Concrete.event_info().version == 1


def test_the_same_type_and_version_cannot_be_declared_twice() -> None:
    reg = Registry()

    class A(Event, type="dup", topic="t", registry=reg):
        x: int

    with pytest.raises(SchemaError, match="declared twice"):

        class B(Event, type="dup", topic="t", registry=reg):
            y: int


def test_all_versions_of_a_type_share_a_topic() -> None:
    reg = Registry()

    class A(Event, type="moved", version=1, topic="one", registry=reg):
        pass

    with pytest.raises(SchemaError, match="shares one topic"):

        class B(Event, type="moved", version=2, topic="two", registry=reg):
            pass


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"type": "bad type", "topic": "t"}, "letters, digits"),
        ({"type": "ok", "topic": "no spaces"}, "valid Kafka topic"),
        ({"type": "ok", "topic": "t", "version": 0}, "version must be"),
        ({"topic": "t"}, "no type"),
    ],
)
def test_bad_declarations_say_what_is_wrong(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(SchemaError, match=message):
        type("Bad", (Event,), {"__annotations__": {}}, registry=Registry(), **kwargs)


def test_unknown_type_and_version_errors_list_what_is_known() -> None:
    reg = Registry()
    make_versions(reg)
    with pytest.raises(UnknownEventTypeError, match=r"known: item.added"):
        reg.model("item.removed", 1)
    with pytest.raises(UnknownEventVersionError, match=r"known: 1, 2, 3") as caught:
        reg.model("item.added", 7)
    assert "choreo schemas export" in str(caught.value)


def test_upcasters_chain_from_any_older_version() -> None:
    reg = Registry()
    v1, v2, v3 = make_versions(reg)

    @reg.upcaster
    def one_to_two(old: v1) -> v2:  # type: ignore[valid-type]
        return v2(name=old.name, count=1)  # type: ignore[call-arg, attr-defined]

    @reg.upcaster
    def two_to_three(old: v2) -> v3:  # type: ignore[valid-type]
        return v3(title=old.name, count=old.count)  # type: ignore[call-arg, attr-defined]

    upcast = reg.upcast(v1(name="x"), 3)  # type: ignore[call-arg]
    assert upcast == v3(title="x", count=1)  # type: ignore[call-arg]
    assert reg.upcast(v2(name="y", count=4), 2) == v2(name="y", count=4)  # type: ignore[call-arg]
    reg.check_upcast_path("item.added", 3)


def test_a_gap_in_the_chain_is_reported() -> None:
    reg = Registry()
    v1, v2, _ = make_versions(reg)

    @reg.upcaster
    def one_to_two(old: v1) -> v2:  # type: ignore[valid-type]
        return v2(name=old.name, count=1)  # type: ignore[call-arg, attr-defined]

    with pytest.raises(MissingUpcasterError, match=r"from item.added v2 to v3"):
        reg.check_upcast_path("item.added", 3)
    with pytest.raises(MissingUpcasterError):
        reg.upcast(v1(name="x"), 3)  # type: ignore[call-arg]


def test_downcasting_is_refused() -> None:
    reg = Registry()
    _, v2, _ = make_versions(reg)
    with pytest.raises(VersionTooNewError, match="newer than the handler's v1"):
        reg.upcast(v2(name="x", count=1), 1)  # type: ignore[call-arg]


def test_an_upcaster_must_connect_consecutive_versions() -> None:
    reg = Registry()
    v1, _, v3 = make_versions(reg)

    def skip(old: v1) -> v3:  # type: ignore[valid-type]
        raise NotImplementedError

    with pytest.raises(SchemaError, match=r"vN into v\(N\+1\)"):
        reg.upcaster(skip)


def test_an_upcaster_must_be_annotated() -> None:
    def untyped(old):  # type: ignore[no-untyped-def]
        return old

    with pytest.raises(SchemaError, match="must be annotated"):
        Registry().upcaster(untyped)
