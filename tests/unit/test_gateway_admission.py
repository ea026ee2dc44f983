"""The gateway's decisions in memory: content modes, attribute checks, admission and identity,
the dedup window and the rate limiter."""

from __future__ import annotations

import asyncio
import gc
import json
from datetime import timedelta

import pytest

from choreokit.services.gateway import mint_key
from choreokit.services.gateway._admission import RefusedError, admit, namespaced
from choreokit.services.gateway._binding import MISSING, Mode, RawEvent, mode_of, parse
from choreokit.services.gateway._dedup import DedupWindow, Receipt, Seen
from choreokit.services.gateway._problems import ErrorItem, Problem, ProblemKind
from choreokit.services.gateway._ratelimit import RateLimiter, retry_after
from tests.support import catalog

ACME = mint_key("acme", types=("item.*",)).entry
TRUSTED = mint_key("core", types=("item.*",), trusted=True).entry


def headers(**values: str) -> list[tuple[bytes, bytes]]:
    return [(k.replace("_", "-").encode(), v.encode()) for k, v in values.items()]


def ce(**values: str) -> list[tuple[bytes, bytes]]:
    base = {"ce_specversion": "1.0", "ce_id": "1", "ce_source": "/s", "ce_type": "item.added"}
    return headers(**(base | values))


@pytest.mark.parametrize(
    ("content_type", "mode"),
    [
        ("application/json", Mode.BINARY),
        ("Application/JSON; charset=utf-8", Mode.BINARY),
        ("application/cloudevents+json", Mode.STRUCTURED),
        ('application/cloudevents+json; charset="UTF-8"', Mode.STRUCTURED),
        ("application/cloudevents-batch+json", Mode.BATCH),
    ],
)
def test_the_content_type_chooses_the_mode(content_type: str, mode: Mode) -> None:
    assert mode_of(content_type) is mode


@pytest.mark.parametrize(
    "content_type",
    [None, "", "text/plain", "application/xml", "application/json; charset=latin-1"],
)
def test_other_content_types_are_415(content_type: str | None) -> None:
    with pytest.raises(Problem) as caught:
        mode_of(content_type)
    assert caught.value.kind is ProblemKind.UNSUPPORTED_MEDIA_TYPE


def test_binary_mode_reads_percent_encoded_ce_headers_and_reports_the_rest() -> None:
    [raw] = parse(
        Mode.BINARY,
        [*ce(ce_source="/partners/acme%20eu", ce_replyto="t"), (b"reply_to", b"t")],
        b'{"n": 1}',
    )
    assert raw.attributes["source"] == "/partners/acme eu"
    assert raw.ignored == ("replyto",)
    assert raw.body == b'{"n": 1}'
    assert raw.data is MISSING


@pytest.mark.parametrize(
    ("sent", "attribute"),
    [
        ([*ce(), (b"ce-id", b"2")], "id"),  # twice
        (ce(ce_source="/caf\u00e9"), "source"),  # not percent-encoded
        (ce(ce_source="/caf%FF"), "source"),  # percent-encoded, but not UTF-8
    ],
)
def test_binary_header_mistakes_are_400(sent: list[tuple[bytes, bytes]], attribute: str) -> None:
    with pytest.raises(Problem) as caught:
        parse(Mode.BINARY, sent, b"{}")
    assert caught.value.kind is ProblemKind.MALFORMED
    assert caught.value.errors[0].attribute == attribute


def test_structured_mode_takes_the_http_traceparent_unless_the_event_has_one() -> None:
    event = {"specversion": "1.0", "id": "1", "source": "/s", "type": "t", "data": {}}
    http = [(b"traceparent", b"00-" + b"1" * 32 + b"-" + b"2" * 16 + b"-01")]
    [from_http] = parse(Mode.STRUCTURED, http, json.dumps(event).encode())
    assert from_http.attributes["traceparent"].startswith("00-111")
    own = event | {"traceparent": "00-" + "3" * 32 + "-" + "4" * 16 + "-01"}
    [from_event] = parse(Mode.STRUCTURED, http, json.dumps(own).encode())
    assert from_event.attributes["traceparent"].startswith("00-333")


def test_a_batch_lists_every_failing_event_with_its_index() -> None:
    good = {"specversion": "1.0", "id": "1", "source": "/s", "type": "t", "data": {}}
    body = json.dumps([good, {"id": "2"}, good, "nope"]).encode()
    with pytest.raises(Problem) as caught:
        parse(Mode.BATCH, [], body)
    assert caught.value.kind is ProblemKind.MALFORMED
    assert [(e.index, e.attribute) for e in caught.value.errors] == [(1, "specversion"), (3, None)]
    assert "2 of 4 events are not accepted" in caught.value.detail


def test_the_problem_of_a_mixed_batch_is_the_most_basic_one() -> None:
    mixed = [
        ErrorItem("bad payload", ProblemKind.INVALID_EVENT, index=0),
        ErrorItem("not granted", ProblemKind.FORBIDDEN, index=1),
    ]
    assert Problem.combine(mixed, total=2).kind is ProblemKind.FORBIDDEN
    assert Problem.combine([*mixed, ErrorItem("x", ProblemKind.MALFORMED, index=2)], 3).kind is (
        ProblemKind.MALFORMED
    )


def raw(event_type: str = "item.added", version: int = 2, **attributes: str) -> RawEvent:
    attrs = {"specversion": "1.0", "id": "e-1", "source": "/partners/acme", "type": event_type}
    if version != 1:
        attrs["dataversion"] = str(version)
    return RawEvent(attrs | attributes, data={"n": 1, "label": "x"})


def test_admission_namespaces_ids_and_an_untrusted_keys_flows() -> None:
    cat = catalog()
    root = admit(raw(), ACME, cat.registry)
    assert (root.event_id, root.correlation_id, root.causation_id) == ("acme:e-1", "acme:e-1", None)
    joined = admit(raw(correlationid="flow", causationid="e-0"), ACME, cat.registry)
    assert (joined.correlation_id, joined.causation_id) == ("acme:flow", "acme:e-0")
    trusted = admit(raw(correlationid="flow", causationid="e-0"), TRUSTED, cat.registry)
    assert (trusted.event_id, trusted.correlation_id, trusted.causation_id) == (
        "core:e-1",
        "flow",
        "e-0",
    )
    assert namespaced(ACME, "acme:x") == "acme:x"
    assert namespaced(ACME, "other:x") == "acme:other:x"


def test_the_fingerprint_ignores_time_but_not_content() -> None:
    cat = catalog()
    a = admit(raw(time="2026-01-01T00:00:00Z"), ACME, cat.registry)
    b = admit(raw(time="2026-01-02T00:00:00Z"), ACME, cat.registry)
    changed = RawEvent(raw().attributes, data={"n": 2, "label": "x"})
    assert a.fingerprint == b.fingerprint
    assert admit(changed, ACME, cat.registry).fingerprint != a.fingerprint


@pytest.mark.parametrize(
    ("event", "kind", "rule"),
    [
        (raw("other.type"), ProblemKind.FORBIDDEN, "not_granted"),
        (raw("item.gone"), ProblemKind.INVALID_EVENT, "unknown_type"),
        (raw(version=7), ProblemKind.INVALID_EVENT, "unknown_version"),
        (RawEvent(raw().attributes, data={"n": "x"}), ProblemKind.INVALID_EVENT, "int_parsing"),
        (RawEvent(raw().attributes), ProblemKind.INVALID_EVENT, "missing"),
        (RawEvent(raw().attributes, body=b"{nope"), ProblemKind.MALFORMED, "json_invalid"),
    ],
)
def test_admission_refuses_with_a_kind_and_a_rule(
    event: RawEvent, kind: ProblemKind, rule: str
) -> None:
    with pytest.raises(RefusedError) as caught:
        admit(event, ACME, catalog().registry)
    assert caught.value.items[0].kind is kind
    assert caught.value.items[0].rule == rule


def test_a_source_outside_the_grant_is_forbidden() -> None:
    partner = mint_key("p", types=("item.*",), sources=("/partners/p",)).entry
    with pytest.raises(RefusedError) as caught:
        admit(raw(source="/services/orders"), partner, catalog().registry)
    assert caught.value.items[0].attribute == "source"


def receipt(event_id: str) -> Receipt:
    return Receipt(event_id, event_id, event_id, "t", 0, 1)


async def test_the_dedup_window_remembers_settles_and_forgets() -> None:
    now = [0.0]
    window = DedupWindow(timedelta(seconds=10), capacity=2, clock=lambda: now[0])
    assert window.claim("a", b"1") == (Seen.NEW, None)
    assert window.claim("a", b"1") == (Seen.IN_FLIGHT, None)
    assert window.claim("a", b"2") == (Seen.CONFLICT, None)
    waiter = asyncio.create_task(window.settled("a"))
    window.commit("a", receipt("a"))
    await waiter
    assert window.claim("a", b"1") == (Seen.DONE, receipt("a"))
    window.release("a")  # a published id is not released
    assert window.claim("a", b"1")[0] is Seen.DONE

    assert window.claim("b", b"1")[0] is Seen.NEW
    window.release("b")
    assert window.claim("b", b"1")[0] is Seen.NEW  # a failed publication may be retried

    now[0] = 11.0
    assert window.claim("a", b"1")[0] is Seen.NEW  # forgotten after the window
    window.commit("a", receipt("a"))
    window.commit("b", receipt("b"))
    window.claim("c", b"1")
    assert len(window) == 2  # the capacity holds


def test_a_full_dedup_window_adds_no_objects_for_the_garbage_collector() -> None:
    """The window keeps tuples of atoms, which the cyclic collector stops tracking: 10,000
    remembered ids (a busy gateway holds 100,000) must not lengthen every full collection."""
    window = DedupWindow(timedelta(minutes=10), capacity=20_000)
    gc.collect()
    before = len(gc.get_objects())
    for n in range(10_000):
        event_id = f"k:{n}"
        window.claim(event_id, event_id.encode())
        if n % 2:
            window.commit(event_id, receipt(event_id))
    gc.collect()
    assert len(window) == 10_000
    assert len(gc.get_objects()) - before < 1_000  # one tracked object per id was 10,000


def test_the_token_bucket_allows_a_burst_then_the_rate() -> None:
    now = [0.0]
    limiter = RateLimiter(clock=lambda: now[0])
    assert [limiter.take("k", rate=2, burst=3) for _ in range(3)] == [0, 0, 0]
    wait = limiter.take("k", rate=2, burst=3)
    assert wait == pytest.approx(0.5)
    assert retry_after(wait) == "1"
    assert limiter.take("other", rate=2, burst=3) == 0  # buckets are per key
    now[0] = 0.5
    assert limiter.take("k", rate=2, burst=3) == 0
    now[0] = 100.0
    assert [limiter.take("k", rate=2, burst=3) for _ in range(4)][-1] > 0  # refills up to burst
