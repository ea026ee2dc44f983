"""The ``joined`` extension on the wire: ``ce_joined`` in binary mode, ``joined`` in structured
mode, read back as the ids; a malformed one makes the record invalid like any bad attribute."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from choreokit.events import Envelope, InvalidEnvelopeError, decode, encode_headers, to_structured
from choreokit.events.wire import H_JOINED, STRUCTURED_JSON

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def joined_envelope(joined: str | None) -> Envelope:
    return Envelope(
        id="out",
        source="/services/shipping",
        type="shipment.completed",
        dataversion=1,
        time=NOW,
        correlation_id="flow",
        causation_id="b",
        joined=joined,
    )


def test_binary_and_structured_modes_carry_the_joined_ids() -> None:
    envelope = joined_envelope("a,c")
    headers = encode_headers(envelope)
    assert (H_JOINED, b"a,c") in headers
    read = decode(headers, b"{}", fallback_time=NOW).envelope
    assert read.joined_ids == ("a", "c")
    document = to_structured(envelope, {})
    assert document["joined"] == "a,c"
    structured = decode(
        [("content-type", STRUCTURED_JSON.encode())],
        json.dumps(document).encode(),
        fallback_time=NOW,
    ).envelope
    assert structured.joined_ids == ("a", "c")


def test_an_event_without_joined_has_no_header() -> None:
    headers = encode_headers(joined_envelope(None))
    assert H_JOINED not in dict(headers)
    assert decode(headers, b"{}", fallback_time=NOW).envelope.joined_ids == ()


@pytest.mark.parametrize("bad", ["a,,b", ",a", "a, b", "a\x00b", "x" * 1025])
def test_a_malformed_joined_is_refused(bad: str) -> None:
    headers = [h for h in encode_headers(joined_envelope(None)) if h[0] != H_JOINED]
    with pytest.raises(InvalidEnvelopeError, match=H_JOINED):
        decode([*headers, (H_JOINED, bad.encode())], b"{}", fallback_time=NOW)
