"""Coverage-guided fuzzing (Atheris) of the envelope decoder: arbitrary headers and value.

Run directly: ``.venv/bin/python tests/fuzz/decoder.py -max_total_time=60``;
``tests/unit/test_fuzz_atheris.py`` runs it briefly in CI. Anything but a decode
error (or a decoded event within the accepted bounds) is a crash, and libFuzzer
saves the input that caused it.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import atheris

with atheris.instrument_imports(include=["choreokit"]):
    from choreokit.events import DecodeError, decode

NAMES = [
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
]
CONTENT_TYPES = [b"application/json", b"application/cloudevents+json", b"text/plain"]
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def one_input(data: bytes) -> None:
    """Decode one record built from ``data``; only DecodeError may escape."""
    fdp = atheris.FuzzedDataProvider(data)
    headers: list[tuple[str, bytes | None]] = [
        ("content-type", CONTENT_TYPES[fdp.ConsumeIntInRange(0, len(CONTENT_TYPES) - 1)]),
        ("ce_specversion", b"1.0"),
    ]
    for _ in range(fdp.ConsumeIntInRange(0, 10)):
        name = NAMES[fdp.ConsumeIntInRange(0, len(NAMES) - 1)]
        headers.append((name, fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 64))))
    value = fdp.ConsumeBytes(fdp.remaining_bytes())
    try:
        decoded = decode(headers, value, fallback_time=NOW)
    except DecodeError:
        return
    year = decoded.envelope.time.astimezone(UTC).year
    if not 1970 <= year < 2200:
        raise AssertionError(f"decoded a time outside the bounds: {decoded.envelope.time}")
    decoded.envelope.to_dict()


def main() -> None:
    """Run the fuzzer with libFuzzer's command line (``-max_total_time=N``, corpus dirs)."""
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
