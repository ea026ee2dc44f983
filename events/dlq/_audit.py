"""The audit topic: every replay, purge and outcome, folded into each dead letter's status."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from choreokit.events.dlq._letters import DeadLetter, Replay, Status

REPLAY = "replay"
PURGE = "purge"
OUTCOME = "outcome"


def audit_entry(action: str, dead_letter: str, **fields: Any) -> bytes:
    """Return the JSON value of one audit record (``at`` is now, in seconds since the epoch)."""
    return json.dumps(
        {
            "action": action,
            "dead_letter": dead_letter,
            "at": datetime.now(UTC).timestamp(),
            **fields,
        }
    ).encode()


def parse_entry(value: bytes | None) -> dict[str, Any] | None:
    """Read one audit record's value; ``None`` for anything that is not an audit entry."""
    if not value:
        return None
    try:
        entry = json.loads(value)
    except ValueError:
        return None
    if not isinstance(entry, dict) or not isinstance(entry.get("dead_letter"), str):
        return None
    return entry


def apply_audit(letters: Mapping[str, DeadLetter], entries: Iterable[dict[str, Any]]) -> None:
    """Set each dead letter's replays, purge and status from the audit ``entries``, in order."""
    for entry in entries:
        letter = letters.get(entry["dead_letter"])
        if letter is None:
            continue
        action = entry.get("action")
        at = _when(entry.get("at"))
        if action == REPLAY:
            letter.replays.append(
                Replay(
                    replay_id=str(entry.get("replay_id", "")),
                    operator=str(entry.get("operator", "unknown")),
                    at=at,
                    topic=str(entry.get("topic", "")),
                    group=entry.get("group"),
                    edited=bool(entry.get("edited")),
                    result=str(entry.get("result", "sent")),
                    error=entry.get("error"),
                )
            )
            letter.purged_by = None
        elif action == OUTCOME:
            _record_outcome(letter, entry)
        elif action == PURGE:
            reason = entry.get("reason") or "no reason given"
            letter.purged_by = f"{entry.get('operator', 'unknown')}: {reason}"
    for letter in letters.values():
        letter.status = status_of(letter)


def status_of(letter: DeadLetter) -> Status:
    """The status that follows from a dead letter's replays and purge."""
    results = [r.result for r in letter.replays]
    if "handled" in results:
        return Status.RESOLVED
    if letter.purged_by is not None:
        return Status.PURGED
    for result in reversed(results):
        if result == "failed":
            return Status.FAILED
        if result == "sent":
            return Status.REPLAYED
    return Status.DEAD


def _record_outcome(letter: DeadLetter, entry: dict[str, Any]) -> None:
    replay_id = entry.get("replay_id")
    for n, replay in enumerate(letter.replays):
        if replay.replay_id == replay_id:
            letter.replays[n] = Replay(
                replay_id=replay.replay_id,
                operator=replay.operator,
                at=replay.at,
                topic=replay.topic,
                group=replay.group,
                edited=replay.edited,
                result=str(entry.get("result", "handled")),
                error=entry.get("error"),
            )
            return
    # The outcome arrived before the replay's own entry (or that entry was lost).
    letter.replays.append(
        Replay(
            replay_id=str(replay_id or ""),
            operator="unknown",
            at=_when(entry.get("at")),
            topic=str(entry.get("topic", "")),
            group=entry.get("group"),
            edited=False,
            result=str(entry.get("result", "handled")),
            error=entry.get("error"),
        )
    )


def _when(value: Any) -> datetime:
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    return datetime.now(UTC)
