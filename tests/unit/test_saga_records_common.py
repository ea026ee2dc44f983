"""``decode``'s path for the common record gives the general path's answer, and leaves it the rest.

The event layer reads a record as choreokit's producers send it (binary mode, each header
once) from one dict of its headers; everything else, and everything the general path may
refuse, goes through it, so the refusals and their reasons stay the same. The observer's
``classify`` (its first user) gets the same answer either way; its payload and trace-id
reading are tested here too.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import ConsumerRecord
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from choreokit.events import (
    ChoreoError,
    DecodedRecord,
    Envelope,
    _codec,
    attribute_problem,
    encode_headers,
    record_time,
)
from choreokit.services.saga_observer import records
from choreokit.services.saga_observer.events import LIFECYCLE_TYPES
from choreokit.services.saga_observer.records import SeenEvent, SeenReject, classify
from choreokit.tracing import parse_traceparent
from tests.support import record

BASE = Envelope(
    id="e-1",
    source="/services/orders",
    type="order.placed",
    dataversion=2,
    time=datetime(2026, 11, 21, 12, 0, 0, 123456, tzinfo=UTC),
    correlation_id="flow-1",
    causation_id="c-0",
    traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    tracestate="k=v",
)

texts = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["", " ", "a b", "x" * 1025, "é", "\u00a0", "\u200b", "\x7f", "\ud800"]),
)
raw_values = st.one_of(
    texts.map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.binary(max_size=6),
    st.none(),
)
names = st.sampled_from(
    [
        "content-type",
        "ce_specversion",
        "ce_id",
        "ce_source",
        "ce_type",
        "ce_dataversion",
        "ce_time",
        "ce_correlationid",
        "ce_causationid",
        "traceparent",
        "tracestate",
        "ce_joined",
        "x-other",
    ]
)
special = {
    "content-type": st.sampled_from(
        [
            b"application/json",
            b"Application/JSON",
            b"application/json; charset=utf-8",
            b"text/plain",
        ]
    ),
    "ce_specversion": st.sampled_from([b"1.0", b"0.3", b" 1.0"]),
    "ce_dataversion": st.sampled_from(
        [b"1", b"0", b"01", b"123456789", b"1234567890", b"-1", b"2 "]
    ),
    "ce_time": st.sampled_from(
        [
            b"2026-11-21T12:00:00+00:00",
            b"2026-11-21T12:00:00",
            b"2026-11-21",
            b"1969-12-31T23:59:59+00:00",
            b"2200-01-01T00:00:00+00:00",
            b"2199-12-31T23:00:00-05:00",
            b"2026-11-21T12:00:00Z",
            b"yesterday",
            b"2026-11-21T12:00:00+00:00\x00",
        ]
    ),
}
mutations = st.lists(
    st.tuples(
        st.sampled_from(["set", "drop", "repeat", "add"]),
        names,
        st.one_of(raw_values, st.sampled_from(["special"])),
    ),
    max_size=4,
)


def mutated(
    ops: list[tuple[str, str, object]], data: st.DataObject
) -> list[tuple[str, bytes | None]]:
    headers: list[tuple[str, bytes | None]] = list(encode_headers(BASE))
    for op, name, drawn in ops:
        value = (
            (data.draw(special[name]) if name in special else b"v") if drawn == "special" else drawn
        )
        assert value is None or isinstance(value, bytes)
        if op == "set":
            headers = [(k, value if k == name else v) for k, v in headers]
        elif op == "drop":
            headers = [(k, v) for k, v in headers if k != name]
        else:  # "repeat" keeps the one there, "add" appends whatever the name
            headers.append((name, value))
    return headers


def reference(r: ConsumerRecord[bytes, bytes]) -> DecodedRecord | str:
    """The general path's answer."""
    try:
        return _codec._decode_general(r.headers, r.value, record_time(r.timestamp))
    except ChoreoError as exc:
        return f"{type(exc).__name__}: {exc}"


def common_envelope(r: ConsumerRecord[bytes, bytes]) -> Envelope | None:
    """The common path's envelope, or ``None`` where it leaves the record to the general one."""
    found = _codec._decode_common(r.headers, r.value, record_time(r.timestamp))
    return None if found is None else found.envelope


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=mutations, value=st.one_of(st.none(), st.binary(max_size=8)), data=st.data())
def test_the_common_path_accepts_only_what_decode_accepts_and_reads_it_the_same(
    ops: list[tuple[str, str, object]], value: bytes | None, data: st.DataObject
) -> None:
    r = record("orders", value=value, headers=mutated(ops, data))
    fast = common_envelope(r)
    expected = reference(r)
    if fast is not None:
        assert isinstance(expected, DecodedRecord), expected
        assert fast == expected.envelope
        assert fast.time.utcoffset() == expected.envelope.time.utcoffset()
        assert not expected.structured
        assert expected.data == r.value


@settings(max_examples=300, deadline=None)
@given(ops=mutations, value=st.one_of(st.none(), st.binary(max_size=8)), data=st.data())
def test_a_record_gets_the_same_answer_as_through_decode(
    ops: list[tuple[str, str, object]], value: bytes | None, data: st.DataObject
) -> None:
    """The whole classification, rejects and their reasons included, with and without it."""
    r = record("orders", value=value, headers=mutated(ops, data))
    found = classify(r, lifecycle_types=LIFECYCLE_TYPES, payload_limit=6)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_codec, "_decode_common", lambda *_args: None)
        slow = classify(r, lifecycle_types=LIFECYCLE_TYPES, payload_limit=6)
    if isinstance(found, SeenReject):
        assert isinstance(slow, SeenReject)
        assert (found.error_type, found.error_message) == (slow.error_type, slow.error_message)
    else:
        assert found == slow


HOSTILE: list[bytes | str] = [
    b"x" * 1025,
    "x" * 1023 + "é",
    b"a\x00b",
    b"\x7f",
    "\u202e".encode(),
    b"\xff",
    b"",
    b" ",
]


@pytest.mark.parametrize(
    "name",
    [
        "ce_id",
        "ce_source",
        "ce_type",
        "ce_correlationid",
        "ce_causationid",
        "traceparent",
        "tracestate",
        "ce_time",
        "ce_dataversion",
    ],
)
def test_each_hostile_attribute_gets_decodes_answer(name: str) -> None:
    for value in [*HOSTILE, None]:
        raw: bytes | None = value.encode() if isinstance(value, str) else value
        headers = [(k, raw if k == name else v) for k, v in encode_headers(BASE)]
        r = record("orders", value=b"{}", headers=headers)
        fast = common_envelope(r)
        expected = reference(r)
        if isinstance(expected, str):
            assert fast is None, (name, raw, expected)
        elif fast is not None:
            assert fast == expected.envelope


def test_producers_records_take_the_common_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """What choreokit's producers send is read without the general path (its loop and checks)."""

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the general path was called for a common record")

    monkeypatch.setattr(_codec, "_decode_general", refuse)
    for envelope in (
        BASE,
        Envelope("e", "/s", "t", 1, BASE.time, "e"),
        Envelope("e", "/s", "t", 1, BASE.time + timedelta(hours=3), "f", "c", "tp", None),
    ):
        found = classify(
            record("orders", value=b'{"a":1}', headers=encode_headers(envelope)),
            lifecycle_types=LIFECYCLE_TYPES,
            payload_limit=100,
        )
        assert isinstance(found, SeenEvent)
        assert found.envelope == envelope
        assert (found.payload, found.size) == ('{"a":1}', 7)


def test_every_printable_character_is_allowed_in_an_attribute() -> None:
    """What the common path's check relies on: the forbidden characters are all non-printable.

    Fails if the event layer starts refusing a printable character (the common path would
    then accept what ``decode`` refuses).
    """
    printable = "".join(c for c in map(chr, range(sys.maxunicode + 1)) if c.isprintable())
    assert attribute_problem(printable, max_length=len(printable)) is None


@settings(max_examples=300, deadline=None)
@given(raw=st.one_of(st.binary(max_size=12), st.text(max_size=8).map(str.encode)))
def test_a_binary_payload_is_kept_as_before(raw: bytes) -> None:
    """Valid UTF-8 is kept as it came, without decoding and encoding it again."""
    text = raw.decode("utf-8", "replace")
    encoded = text.encode("utf-8", "surrogatepass")
    for limit in (0, 5, 100):
        before = (
            None if len(encoded) > limit else encoded.decode("utf-8", "replace"),
            len(encoded),
        )
        assert records._payload(raw, False, limit) == before


def test_a_structured_payload_with_a_lone_surrogate_stays_storable() -> None:
    data = json.loads('{"a": "\\ud800"}')
    assert records._payload(data, True, 100) == ('{"a":"\ufffd\ufffd\ufffd"}', 11)


hex_digits = st.text("0123456789abcdefABCDEF-", min_size=0, max_size=4)


@settings(max_examples=300, deadline=None)
@given(
    version=st.sampled_from(["00", "01", "ff", "0"]),
    trace=st.one_of(st.sampled_from(["0" * 32, "0af7651916cd43dd8448eb211c80319c"]), hex_digits),
    span=st.one_of(st.sampled_from(["0" * 16, "b7ad6b7169203331"]), hex_digits),
    flags=st.sampled_from(["01", "00", "1", "zz"]),
    tail=st.sampled_from(["", "-x", " "]),
)
def test_a_trace_id_is_read_as_the_tracing_layer_reads_it(
    version: str, trace: str, span: str, flags: str, tail: str
) -> None:
    traceparent = f"{version}-{trace}-{span}-{flags}{tail}"
    context = parse_traceparent(traceparent)
    assert records.trace_id(traceparent) == (
        None if context is None else f"{context.trace_id:032x}"
    )
