"""The fault suite's checker on synthetic records: each kind of fault is found, a clean run is
clean, and a redelivered copy (same ce_id) is not mistaken for a duplicated effect."""

from __future__ import annotations

import json

import pytest

from tests.chaos.checker import (
    MARKER_HEADER,
    DuplicatedEffect,
    Report,
    Seen,
    check,
    payload_field,
    redeliveries,
)
from tests.support import record

FLOWS = [f"flow-{n}" for n in range(4)]


def clean_run() -> list[Seen]:
    """Each flow: ``item.added`` on ``in`` (its cause), ``item.seen`` on ``out``."""
    seen: list[Seen] = []
    for n, flow in enumerate(FLOWS):
        seen.append(Seen("in", n % 2, n, f"a-{n}", "item.added", flow, None, {"seq": 0}))
        seen.append(Seen("out", n % 2, n, f"s-{n}", "item.seen", flow, f"a-{n}", {"seq": 1}))
    return seen


def judge(seen: list[Seen]) -> Report:
    return check(
        seen,
        expected_flows=FLOWS,
        effect_types={"item.seen"},
        terminal_types={"item.seen"},
        sequence=payload_field("seq"),
    )


def test_a_clean_run_is_clean() -> None:
    report = check(
        clean_run(),
        expected_flows=FLOWS,
        expected_effects={"item.seen"},
        effect_types={"item.seen"},
        terminal_types={"item.seen"},
        sequence=payload_field("seq"),
    )
    assert report.clean
    report.assert_clean()
    assert (report.records, report.distinct_ids, report.flows, report.copies) == (8, 8, 4, 0)
    assert report.per_topic == {"in": 4, "out": 4}
    assert "lost 0, duplicated effects 0, order violations 0, unended 0" in report.figures()


def test_a_lost_flow_and_a_lost_id_are_reported() -> None:
    seen = [s for s in clean_run() if s.flow != "flow-2"]
    report = check(seen, expected_flows=FLOWS, expected_ids={"a-1", "a-2"})
    assert report.lost == ("flow-2", "a-2")
    with pytest.raises(AssertionError, match=r"lost 2: \['flow-2', 'a-2'\]"):
        report.assert_clean()


def test_a_flow_missing_an_expected_effect_lost_it() -> None:
    seen = [s for s in clean_run() if s.id != "s-3"]
    report = check(seen, expected_flows=FLOWS, expected_effects={"item.seen"})
    assert report.lost == ("flow-3/item.seen",)


def test_two_ids_of_one_effect_are_a_duplicated_effect() -> None:
    seen = [*clean_run(), Seen("out", 1, 9, "s-1-again", "item.seen", "flow-1", "a-1", {"seq": 1})]
    report = judge(seen)
    assert report.duplicated_effects == (
        DuplicatedEffect("flow-1", "item.seen", ("s-1", "s-1-again")),
    )
    assert not report.clean


def test_the_same_id_twice_is_a_copy_not_a_duplicated_effect() -> None:
    """A redelivery republishes the same ce_id: counted, allowed, never an order violation."""
    seen = [*clean_run(), Seen("out", 1, 9, "s-1", "item.seen", "flow-1", "a-1", {"seq": 1})]
    seen.append(Seen("out", 1, 10, "a-1", "item.added", "flow-1", None, {"seq": 0}))
    report = check(seen, expected_flows=FLOWS, sequence=payload_field("seq"))
    assert report.copies == 2
    assert report.clean, report.problems()


def test_an_event_before_its_cause_on_one_partition_is_an_order_violation() -> None:
    seen = [
        Seen("t", 0, 0, "b", "item.seen", "f", "a"),
        Seen("t", 0, 1, "a", "item.added", "f", None),
    ]
    report = check(seen)
    assert [(v.flow, v.offset) for v in report.order_violations] == [("f", 0)]
    assert "before its cause at 1" in report.order_violations[0].why


def test_a_smaller_sequence_after_a_larger_one_is_an_order_violation() -> None:
    seen = [
        Seen("t", 3, n, f"e{n}", "step", "f", None, {"seq": seq})
        for n, seq in enumerate([0, 2, 1, 3])
    ]
    # Another flow on the same partition has its own sequence.
    seen.append(Seen("t", 3, 9, "other", "step", "g", None, {"seq": 0}))
    report = check(seen, effect_types=(), sequence=payload_field("seq"))
    assert [(v.partition, v.offset, v.why) for v in report.order_violations] == [
        (3, 2, "sequence 1 after 2 at 1")
    ]


def test_orders_across_partitions_are_not_compared() -> None:
    seen = [
        Seen("t", 0, 5, "e1", "step", "f", None, {"seq": 1}),
        Seen("t", 1, 0, "e0", "step", "f", None, {"seq": 0}),
    ]
    assert check(seen, effect_types=(), sequence=payload_field("seq")).clean


def test_a_flow_without_a_terminal_event_never_ended() -> None:
    seen = [s for s in clean_run() if s.id != "s-0"]
    report = judge(seen)
    assert report.unended == ("flow-0",)
    # An expected flow never seen at all is both lost and unended.
    report = check(seen, expected_flows=[*FLOWS, "flow-9"], terminal_types={"item.seen"})
    assert report.lost == ("flow-9",)
    assert report.unended == ("flow-0", "flow-9")


def test_a_record_without_ce_id_is_counted_undecodable() -> None:
    report = check([*clean_run(), Seen("in", 0, 99, None, None, None)])
    assert report.undecodable == 1
    assert not report.clean


def test_records_are_read_in_binary_and_structured_mode() -> None:
    binary = record(
        "in",
        value=json.dumps({"seq": 4}).encode(),
        headers=[
            ("ce_id", b"e1"),
            ("ce_type", b"item.added"),
            ("ce_correlationid", b"f1"),
            ("ce_causationid", b"c0"),
        ],
        offset=7,
        partition=2,
    )
    assert Seen.of(binary) == Seen("in", 2, 7, "e1", "item.added", "f1", "c0", {"seq": 4})
    body = {"id": "e2", "type": "item.seen", "specversion": "1.0", "data": {"n": 1}}
    structured = record(
        "out",
        value=json.dumps(body).encode(),
        headers=[("content-type", b"application/cloudevents+json")],
    )
    # Without a correlation id an event starts its own flow.
    assert Seen.of(structured) == Seen("out", 0, 0, "e2", "item.seen", "e2", None, {"n": 1})
    garbage = record("in", value=b"\xff not json", headers=[(MARKER_HEADER + "x", b"")])
    assert Seen.of(garbage).id is None


def test_redeliveries_are_the_ids_handled_more_than_once() -> None:
    assert redeliveries(["a", "b", "a", "c", "a", "b"]) == {"a": 3, "b": 2}
    assert redeliveries(["a", "b"]) == {}
