"""Coverage-guided fuzzing (Atheris) of the gateway's CloudEvents HTTP binding.

Arbitrary content types, headers and bodies go through ``mode_of`` and
``parse``; the only acceptable failure is a :class:`Problem` (an RFC 9457
answer). Run directly: ``.venv/bin/python tests/fuzz/gateway_binding.py
-max_total_time=60``; ``tests/unit/test_fuzz_atheris.py`` runs it briefly in CI.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["choreokit"]):
    from choreokit.services.gateway._binding import mode_of, parse
    from choreokit.services.gateway._problems import Problem

CONTENT_TYPES = [
    "application/json",
    "application/cloudevents+json",
    "application/cloudevents-batch+json",
    "application/json; charset=utf-8",
]
HEADERS = [
    b"ce-specversion",
    b"ce-id",
    b"ce-source",
    b"ce-type",
    b"ce-time",
    b"ce-dataversion",
    b"ce-correlationid",
    b"ce-causationid",
    b"ce-datacontenttype",
    b"traceparent",
    b"tracestate",
    b"ce-other",
]


def one_input(data: bytes) -> None:
    """Parse one request built from ``data``; only Problem may escape."""
    fdp = atheris.FuzzedDataProvider(data)
    if fdp.ConsumeBool():
        content_type = CONTENT_TYPES[fdp.ConsumeIntInRange(0, len(CONTENT_TYPES) - 1)]
    else:
        content_type = fdp.ConsumeUnicodeNoSurrogates(40)
    headers = [(b"ce-specversion", b"1.0")] if fdp.ConsumeBool() else []
    for _ in range(fdp.ConsumeIntInRange(0, 10)):
        name = HEADERS[fdp.ConsumeIntInRange(0, len(HEADERS) - 1)]
        headers.append((name, fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 64))))
    body = fdp.ConsumeBytes(fdp.remaining_bytes())
    try:
        events = parse(mode_of(content_type), headers, body)
    except Problem:
        return
    for event in events:
        _ = (event.type, event.version, event.attributes["source"])


def main() -> None:
    """Run the fuzzer with libFuzzer's command line (``-max_total_time=N``, corpus dirs)."""
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
