"""The CloudEvents codec: binary mode out; binary and structured mode in; every bad input named."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from choreokit.events import (
    Envelope,
    InvalidEnvelopeError,
    InvalidPayloadError,
    MalformedJsonError,
    Registry,
    UnsupportedContentTypeError,
    decode,
    encode_headers,
)
from choreokit.events import Event as _Event

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
reg = Registry()


class Thing(_Event, type="thing.made", version=1, topic="things", registry=reg):
    name: str
    size: int = 0


def full_envelope(**changes: object) -> Envelope:
    base: dict[str, object] = {
        "id": "e-1",
        "source": "/services/things",
        "type": "thing.made",
        "dataversion": 1,
        "time": NOW,
        "correlation_id": "flow-1",
        "causation_id": "e-0",
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "tracestate": "vendor=1",
    }
    base.update(changes)
    return Envelope(**base)  # type: ignore[arg-type]


def binary_headers() -> list[tuple[str, bytes | None]]:
    return list(encode_headers(full_envelope()))


def replace_header(name: str, value: bytes | None) -> list[tuple[str, bytes | None]]:
    return [(k, value if k == name else v) for k, v in binary_headers()]


def without(name: str) -> list[tuple[str, bytes | None]]:
    return [(k, v) for k, v in binary_headers() if k != name]


def test_binary_mode_round_trips_every_attribute() -> None:
    envelope = full_envelope()
    decoded = decode(encode_headers(envelope), b'{"name":"a"}', fallback_time=NOW)
    assert decoded.envelope == envelope
    assert decoded.structured is False
    assert decoded.event(Thing) == Thing(name="a")


def test_encoded_headers_follow_the_kafka_binding() -> None:
    headers = dict(encode_headers(full_envelope()))
    assert headers == {
        "content-type": b"application/json",
        "ce_specversion": b"1.0",
        "ce_id": b"e-1",
        "ce_source": b"/services/things",
        "ce_type": b"thing.made",
        "ce_dataversion": b"1",
        "ce_time": NOW.isoformat().encode(),
        "ce_correlationid": b"flow-1",
        "ce_causationid": b"e-0",
        "traceparent": b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "tracestate": b"vendor=1",
    }


def test_a_root_event_has_no_causation_header() -> None:
    headers = dict(encode_headers(full_envelope(causation_id=None, traceparent=None)))
    assert "ce_causationid" not in headers
    assert "traceparent" not in headers


def test_missing_correlation_makes_the_event_its_own_flow() -> None:
    decoded = decode(without("ce_correlationid"), b"{}", fallback_time=NOW)
    assert decoded.envelope.correlation_id == "e-1"


def test_missing_dataversion_means_version_one() -> None:
    headers = [(k, v) for k, v in encode_headers(full_envelope(dataversion=3))]
    headers = [(k, v) for k, v in headers if k != "ce_dataversion"]
    assert decode(headers, b"{}", fallback_time=NOW).envelope.dataversion == 1


def test_missing_time_takes_the_record_timestamp() -> None:
    fallback = NOW - timedelta(hours=1)
    assert decode(without("ce_time"), b"{}", fallback_time=fallback).envelope.time == fallback


def test_time_keeps_its_offset() -> None:
    tz = timezone(timedelta(hours=2))
    headers = replace_header("ce_time", b"2026-11-21T14:00:00+02:00")
    assert decode(headers, b"{}", fallback_time=NOW).envelope.time == datetime(
        2026, 11, 21, 14, 0, tzinfo=tz
    )


def test_content_type_parameters_are_accepted() -> None:
    headers = replace_header("content-type", b"application/json; charset=utf-8")
    assert decode(headers, b"{}", fallback_time=NOW).envelope.id == "e-1"


def test_absent_content_type_means_json() -> None:
    assert decode(without("content-type"), b"{}", fallback_time=NOW).envelope.id == "e-1"


@pytest.mark.parametrize(
    ("headers", "attribute", "reason"),
    [
        (without("ce_specversion"), "ce_specversion", "missing"),
        (replace_header("ce_specversion", b"0.3"), "ce_specversion", "only '1.0'"),
        (without("ce_id"), "ce_id", "missing"),
        (replace_header("ce_id", b"  "), "ce_id", "missing"),
        (without("ce_source"), "ce_source", "missing"),
        (without("ce_type"), "ce_type", "missing"),
        (replace_header("ce_type", b"\xff\xfe"), "ce_type", "UTF-8"),
        (replace_header("ce_id", b"a\x00b"), "ce_id", "control characters"),
        (replace_header("ce_id", b"x" * 2000), "ce_id", "longer than"),
        (replace_header("ce_dataversion", b"two"), "ce_dataversion", "positive integer"),
        (replace_header("ce_dataversion", b"0"), "ce_dataversion", "positive integer"),
        (replace_header("ce_time", b"yesterday"), "ce_time", "RFC 3339"),
        (replace_header("ce_time", b"2026-11-21T12:00:00"), "ce_time", "UTC offset"),
        ([*binary_headers(), ("ce_id", b"e-2")], "ce_id", "more than once"),
    ],
)
def test_bad_attributes_are_named(
    headers: list[tuple[str, bytes | None]], attribute: str, reason: str
) -> None:
    with pytest.raises(InvalidEnvelopeError) as caught:
        decode(headers, b"{}", fallback_time=NOW)
    assert caught.value.attribute == attribute
    assert reason in str(caught.value)


def test_unsupported_content_type_is_refused() -> None:
    with pytest.raises(UnsupportedContentTypeError, match="text/plain"):
        decode(replace_header("content-type", b"text/plain"), b"x", fallback_time=NOW)


def test_a_record_without_value_is_invalid() -> None:
    with pytest.raises(InvalidPayloadError, match="no value"):
        decode(binary_headers(), None, fallback_time=NOW)


def test_malformed_json_is_its_own_error() -> None:
    decoded = decode(binary_headers(), b"{not json", fallback_time=NOW)
    with pytest.raises(MalformedJsonError):
        decoded.event(Thing)


def test_payload_errors_carry_the_field_path_and_rule() -> None:
    decoded = decode(binary_headers(), b'{"name": 5, "size": "big"}', fallback_time=NOW)
    with pytest.raises(InvalidPayloadError) as caught:
        decoded.event(Thing)
    assert "name: Input should be a valid string [string_type]" in caught.value.detail
    assert "size:" in caught.value.detail


def structured(doc: object) -> tuple[list[tuple[str, bytes | None]], bytes]:
    return [("content-type", b"application/cloudevents+json")], json.dumps(doc).encode()


def test_structured_mode_is_accepted() -> None:
    headers, value = structured(
        {
            "specversion": "1.0",
            "id": "s-1",
            "source": "urn:partner:shop",
            "type": "thing.made",
            "dataversion": 1,
            "time": "2026-11-21T12:00:00Z",
            "correlationid": "flow-9",
            "datacontenttype": "application/json",
            "data": {"name": "from-elsewhere"},
        }
    )
    decoded = decode(headers, value, fallback_time=NOW)
    assert decoded.structured is True
    assert decoded.envelope.correlation_id == "flow-9"
    assert decoded.envelope.time == NOW
    assert decoded.event(Thing) == Thing(name="from-elsewhere")


@pytest.mark.parametrize(
    ("doc", "error"),
    [
        ([1, 2], InvalidEnvelopeError),
        ({"specversion": "1.0", "id": "x", "source": "s", "type": "t"}, InvalidPayloadError),
        (
            {"specversion": "1.0", "id": "x", "source": "s", "type": "t", "data_base64": "AA=="},
            UnsupportedContentTypeError,
        ),
        (
            {
                "specversion": "1.0",
                "id": "x",
                "source": "s",
                "type": "t",
                "datacontenttype": "text/xml",
                "data": "<a/>",
            },
            UnsupportedContentTypeError,
        ),
        (
            {"specversion": "1.0", "id": ["x"], "source": "s", "type": "t", "data": {}},
            InvalidEnvelopeError,
        ),
    ],
)
def test_bad_structured_events_are_refused(doc: object, error: type[Exception]) -> None:
    headers, value = structured(doc)
    with pytest.raises(error):
        decode(headers, value, fallback_time=NOW)


def test_structured_mode_that_is_not_json_is_malformed() -> None:
    with pytest.raises(MalformedJsonError):
        decode([("content-type", b"application/cloudevents+json")], b"{", fallback_time=NOW)


text = st.text(
    alphabet=st.characters(
        min_codepoint=33, max_codepoint=0x2FFF, exclude_categories=("Cs", "Cc", "Cf", "Zl", "Zp")
    ),
    min_size=1,
    max_size=40,
).filter(str.strip)  # blank attributes count as missing, by design


@given(
    event_id=text,
    source=text,
    correlation=text,
    causation=st.none() | text,
    version=st.integers(min_value=1, max_value=10_000),
    seconds=st.integers(min_value=0, max_value=4_000_000_000),
)
def test_any_envelope_round_trips(
    event_id: str,
    source: str,
    correlation: str,
    causation: str | None,
    version: int,
    seconds: int,
) -> None:
    envelope = Envelope(
        id=event_id,
        source=source,
        type="thing.made",
        dataversion=version,
        time=datetime.fromtimestamp(seconds, UTC),
        correlation_id=correlation,
        causation_id=causation,
    )
    assert decode(encode_headers(envelope), b"{}", fallback_time=NOW).envelope == envelope
