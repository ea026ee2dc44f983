"""Dead-letter operations in memory: fingerprints, failure groups, the audit fold, filters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from choreokit.events import dlq
from choreokit.events.dlq import (
    DeadLetterFilter,
    Status,
    failure_groups,
    fingerprint,
    normalise_message,
    parse,
)
from choreokit.events.dlq._audit import apply_audit
from tests.support import record


def test_the_dlq_package_exports_what_it_means_to() -> None:
    exported = sorted(dlq.__all__, key=str.casefold)
    public = sorted((m for m in vars(dlq) if not m.startswith("_")), key=str.casefold)
    assert exported == [m for m in public if m not in ("annotations",)]


def test_messages_that_differ_only_in_values_share_a_fingerprint() -> None:
    a = "no stock for order 'o-17' (sku 12, 0193a0c4-7c1e-7000-8000-00000000abcd)"
    b = "no stock for order 'o-99' (sku 7, 0193a0c4-7c1e-7000-8000-0000000fffff)"
    assert normalise_message(a) == "no stock for order <str> (sku <n>, <uuid>)"
    assert fingerprint("KeyError", a, "orders/app.py:reserve") == fingerprint(
        "KeyError", b, "orders/app.py:reserve"
    )
    assert fingerprint("KeyError", a, "x.py:f") != fingerprint("KeyError", a, "x.py:g")
    assert fingerprint("KeyError", a, "x.py:f") != fingerprint("ValueError", a, "x.py:f")


def letter(offset: int, *, error: str, failed_at: str, group: str = "payments") -> dlq.DeadLetter:
    headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", f"e{offset}".encode()),
        ("ce_type", b"payment.requested"),
        ("ce_source", b"/tests"),
        ("ce_correlationid", f"flow-{offset}".encode()),
        ("choreo_dlq_error_type", error.encode()),
        ("choreo_dlq_error_message", f"timeout after {offset} ms".encode()),
        ("choreo_dlq_error_frame", b"payments/app.py:charge"),
        ("choreo_dlq_consumer_group", group.encode()),
        ("choreo_dlq_original_topic", b"payments"),
        ("choreo_dlq_failed_at", failed_at.encode()),
    ]
    return parse(record("payments.dlq", value=b"{}", headers=headers, offset=offset))


def test_failure_groups_count_and_date_their_members() -> None:
    letters = [
        letter(1, error="TimeoutError", failed_at="2026-12-01T08:00:00+00:00"),
        letter(2, error="TimeoutError", failed_at="2026-12-01T09:00:00+00:00"),
        letter(3, error="KeyError", failed_at="2026-12-01T08:30:00+00:00", group="orders"),
    ]
    first, second = failure_groups(letters)
    assert (first.error_type, first.count, first.message) == (
        "TimeoutError",
        2,
        "timeout after <n> ms",
    )
    assert first.first_seen == datetime(2026, 12, 1, 8, tzinfo=UTC)
    assert first.last_seen == datetime(2026, 12, 1, 9, tzinfo=UTC)
    assert first.sample == "payments.dlq/0/2"
    assert (second.error_type, second.count, second.groups) == ("KeyError", 1, {"orders"})


def test_the_audit_decides_the_status_and_resolved_is_final() -> None:
    letters = {
        x.id: x
        for x in (
            letter(n, error="TimeoutError", failed_at="2026-12-01T08:00:00+00:00") for n in range(4)
        )
    }
    ids = sorted(letters)
    entries = [
        {"action": "replay", "dead_letter": ids[0], "replay_id": "r0", "result": "sent"},
        # An outcome may be read before its replay's entry: it still counts.
        {"action": "outcome", "dead_letter": ids[1], "replay_id": "r1", "result": "handled"},
        {"action": "replay", "dead_letter": ids[1], "replay_id": "r1", "result": "sent"},
        {"action": "purge", "dead_letter": ids[1], "reason": "late purge", "operator": "bo"},
        {"action": "replay", "dead_letter": ids[2], "replay_id": "r2", "result": "sent"},
        {"action": "outcome", "dead_letter": ids[2], "replay_id": "r2", "result": "failed"},
        {"action": "purge", "dead_letter": ids[3], "reason": "test data", "operator": "al"},
        {"action": "replay", "dead_letter": "elsewhere.dlq/0/0", "replay_id": "x"},
    ]
    apply_audit(letters, entries)
    assert [letters[i].status for i in ids] == [
        Status.REPLAYED,
        Status.RESOLVED,
        Status.FAILED,
        Status.PURGED,
    ]
    assert letters[ids[3]].purged_by == "al: test data"


def test_filters_narrow_by_every_field_and_hide_purged_ones() -> None:
    a = letter(1, error="TimeoutError", failed_at="2026-12-01T08:00:00+00:00")
    b = letter(2, error="KeyError", failed_at="2026-12-01T10:00:00+00:00", group="orders")
    b.status = Status.PURGED
    noon = datetime(2026, 12, 1, 9, tzinfo=UTC)
    assert DeadLetterFilter(group="payments").matches(a)
    assert not DeadLetterFilter(group="orders").matches(a)
    assert DeadLetterFilter(topic="payments", error_type="TimeoutError").matches(a)
    assert DeadLetterFilter(until=noon).matches(a)
    assert not DeadLetterFilter(since=noon).matches(a)
    assert DeadLetterFilter(correlation_id="flow-1", event_type="payment.requested").matches(a)
    assert DeadLetterFilter(fingerprint=a.fingerprint[:6]).matches(a)
    assert not DeadLetterFilter().matches(b)
    assert DeadLetterFilter(include_purged=True).matches(b)
    assert DeadLetterFilter(statuses=frozenset({Status.PURGED})).matches(b)
    assert DeadLetterFilter(since=noon - timedelta(hours=2)).matches(a)
