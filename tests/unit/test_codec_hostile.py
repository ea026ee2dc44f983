"""A structured-mode record nested deeper than Python's recursion limit is a decode error
(dead-lettered), not a RecursionError that would make the consumer read it forever."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from choreokit.events import MalformedJsonError, decode


def test_a_deeply_nested_structured_record_is_malformed_json() -> None:
    value = (
        b'{"specversion":"1.0","id":"1","source":"/s","type":"t","data":'
        + b"[" * 100_000
        + b"]" * 100_000
        + b"}"
    )
    with pytest.raises(MalformedJsonError, match="nested too deeply"):
        decode(
            [("content-type", b"application/cloudevents+json")],
            value,
            fallback_time=datetime.now(UTC),
        )
