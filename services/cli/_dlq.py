"""``choreo dlq``: list, group, show, replay (to the group that failed) and purge dead letters."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import click

from choreokit.events import KafkaSettings, parse_duration
from choreokit.events.dlq import (
    DeadLetter,
    DeadLetterFilter,
    DeadLetterStore,
    ReplayResult,
    Status,
    failure_groups,
)
from choreokit.services.cli._common import bootstrap_option, run_async

F = TypeVar("F", bound=Callable[..., Any])


def _when(value: str | None) -> datetime | None:
    """An ISO 8601 time, or a duration (``30m``, ``2h``) meaning that long ago."""
    if value is None:
        return None
    duration = parse_duration(value)
    if isinstance(duration, timedelta):
        return datetime.now(UTC) - duration
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is neither an ISO 8601 time nor a duration like 30m or 2h"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def filter_options(fn: F) -> F:
    """The selection options every subcommand shares."""
    options = [
        click.option("--topic", default=None, help="Original topic (or its .dlq)."),
        click.option("--group", default=None, help="Consumer group that failed."),
        click.option("--error-type", default=None, help="Error class, e.g. TimeoutError."),
        click.option("--type", "event_type", default=None, help="Event type (ce_type)."),
        click.option("--flow", default=None, help="Flow (correlation) id."),
        click.option("--fingerprint", default=None, help="Failure group (a prefix will do)."),
        click.option("--since", default=None, help="Dead-lettered at/after: ISO time or 30m, 2h."),
        click.option("--until", default=None, help="Dead-lettered before: ISO time or 30m, 2h."),
        click.option(
            "--status",
            "statuses",
            multiple=True,
            type=click.Choice([s.value for s in Status]),
            help="Only these statuses (repeatable).",
        ),
        click.option("--include-purged", is_flag=True, help="Show purged dead letters too."),
        bootstrap_option,
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _filter(kwargs: dict[str, Any]) -> DeadLetterFilter:
    return DeadLetterFilter(
        topic=kwargs.pop("topic"),
        group=kwargs.pop("group"),
        error_type=kwargs.pop("error_type"),
        event_type=kwargs.pop("event_type"),
        correlation_id=kwargs.pop("flow"),
        fingerprint=kwargs.pop("fingerprint"),
        since=_when(kwargs.pop("since")),
        until=_when(kwargs.pop("until")),
        statuses=frozenset(Status(s) for s in kwargs.pop("statuses")),
        include_purged=kwargs.pop("include_purged"),
    )


def _selective(where: DeadLetterFilter) -> bool:
    return where != DeadLetterFilter(include_purged=where.include_purged)


def _line(letter: DeadLetter) -> str:
    return (
        f"{letter.id}  {letter.status.value:<8} {letter.failed_at:%Y-%m-%d %H:%M:%S}  "
        f"group={letter.group or '-'} type={letter.event_type or '-'} "
        f"flow={letter.correlation_id or '-'}  {letter.error_type}: "
        f"{letter.error_message[:120]}"
    )


@click.group()
def dlq() -> None:
    r"""Dead letters: records a consumer group gave up on, in <topic>.dlq.

    \b
    Examples:
      choreo dlq list --group payments --since 2h
      choreo dlq groups
      choreo dlq show orders.dlq/0/12
      choreo dlq replay orders.dlq/0/12 --wait 30
      choreo dlq replay --fingerprint 3f2a9c --wait 30
      choreo dlq replay orders.dlq/0/12 --data @fixed.json
      choreo dlq purge --error-type UnknownEventTypeError --reason "rogue producer"

    A replay goes to the original topic for the one group that failed (other
    groups skip it), and is recorded with who, when and what in the
    choreo.dlq.audit topic, where the group also reports whether it handled
    it. Purging marks dead letters as dealt with there (Kafka cannot delete
    single records); list hides them unless --include-purged. Who acts:
    $CHOREO_OPERATOR, else the login name.
    """
    if logging.getLogger().getEffectiveLevel() > logging.INFO:
        # aiokafka logs each failed connection at ERROR; our own error says it in one line.
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)


@dlq.command(name="list")
@filter_options
@click.option("--groups", "by_group", is_flag=True, help="Failure groups instead of records.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Newest N only.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def list_(by_group: bool, limit: int | None, as_json: bool, bootstrap: str, **kwargs: Any) -> None:
    r"""List dead letters (oldest first), or their failure groups with --groups.

    \b
    Examples:
      choreo dlq list
      choreo dlq list --topic orders --error-type TimeoutError --json
      choreo dlq list --flow 0193a0c4-... --include-purged
    """
    where = _filter(kwargs)
    letters = run_async(lambda: _read(bootstrap, where))
    if by_group:
        _print_groups(letters, as_json)
        return
    if limit is not None:
        letters = letters[-limit:]
    for letter in letters:
        click.echo(json.dumps(letter.to_json()) if as_json else _line(letter))
    if not as_json and not letters:
        click.echo("no dead letters match", err=True)


@dlq.command()
@filter_options
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def groups(as_json: bool, bootstrap: str, **kwargs: Any) -> None:
    r"""Failure groups: dead letters by error type, normalised message and top frame.

    \b
    Example:
      choreo dlq groups --since 1h
      choreo dlq replay --fingerprint <FINGERPRINT> --wait 30
    """
    where = _filter(kwargs)
    _print_groups(run_async(lambda: _read(bootstrap, where)), as_json)


def _print_groups(letters: list[DeadLetter], as_json: bool) -> None:
    for group in failure_groups(letters):
        if as_json:
            click.echo(json.dumps(group.to_json()))
        else:
            click.echo(
                f"{group.fingerprint}  {group.count:>6}  {group.first_seen:%Y-%m-%d %H:%M} .. "
                f"{group.last_seen:%Y-%m-%d %H:%M}  groups={','.join(sorted(group.groups)) or '-'}"
                f"  {group.error_type}: {group.message[:100]}  at {group.frame or '?'}"
            )


@dlq.command()
@click.argument("dead_letter_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@bootstrap_option
def show(dead_letter_id: str, as_json: bool, bootstrap: str) -> None:
    r"""Show one dead letter in full: payload, headers, error chain, traceback, replays.

    \b
    Example:
      choreo dlq show orders.dlq/0/12
    """

    async def get() -> DeadLetter:
        async with DeadLetterStore(KafkaSettings(bootstrap=bootstrap)) as store:
            return await store.get(dead_letter_id)

    letter = run_async(get)
    shown = letter.to_json(full=True)
    if as_json:
        click.echo(json.dumps(shown, indent=2))
        return
    click.echo(_line(letter))
    for name in ("original", "event_id", "attempts", "error_frame", "fingerprint", "purged_by"):
        click.echo(f"  {name}: {json.dumps(shown[name])}")
    click.echo("  error chain:")
    for link in letter.error_chain:
        click.echo(f"    {link.get('type')}: {link.get('message')}  ({link.get('link') or 'root'})")
    click.echo(f"  data: {json.dumps(shown['data'])}")
    click.echo(f"  headers: {json.dumps(shown['headers'])}")
    for replay in shown["replays"]:
        click.echo(f"  replay: {json.dumps(replay)}")
    if letter.traceback:
        click.echo("  traceback (last frames):")
        for tb_line in letter.traceback.rstrip().splitlines():
            click.echo(f"    {tb_line}")


@dlq.command()
@click.argument("ids", nargs=-1, metavar="[ID]...")
@filter_options
@click.option("--all", "everything", is_flag=True, help="Every dead letter the filters select.")
@click.option("--data", default=None, help="Corrected payload (one ID): JSON, @FILE or @-.")
@click.option("--to-topic", default=None, help="Send to this topic instead of the original.")
@click.option("--force", is_flag=True, help="Replay resolved or purged dead letters too.")
@click.option("--dry-run", is_flag=True, help="Show what would be replayed; send nothing.")
@click.option(
    "--wait",
    type=click.FloatRange(min=0),
    default=0,
    help="Wait up to this many seconds for the group to report handled/failed.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def replay(
    ids: tuple[str, ...],
    everything: bool,
    data: str | None,
    to_topic: str | None,
    force: bool,
    dry_run: bool,
    wait: float,
    as_json: bool,
    bootstrap: str,
    **kwargs: Any,
) -> None:
    r"""Replay dead letters to the one consumer group that failed on them.

    Select by IDs, or by filters (a failure group: --fingerprint), or --all;
    filters pick dead letters still dead or failed again (--status or --force
    to widen). Exits 1 if any replay was not sent or, with --wait, failed again.

    \b
    Examples:
      choreo dlq replay orders.dlq/0/12 --wait 30
      choreo dlq replay --group payments --error-type TimeoutError --wait 60
      choreo dlq replay orders.dlq/0/12 --data '{"order_id":"o-1", ...}'
      choreo dlq replay orders.dlq/0/12 --to-topic orders.quarantine
    """
    where = _filter(kwargs)
    payload = _read_data(data) if data is not None else None
    if not ids and not everything and not _selective(where):
        raise click.UsageError("give dead-letter IDs, filters (e.g. --fingerprint), or --all")
    if not ids and not where.statuses and not force:
        # A filter picks what still needs a replay; replayed ones are in flight already.
        where = replace(where, statuses=frozenset({Status.DEAD, Status.FAILED}))

    async def act() -> list[ReplayResult] | list[DeadLetter]:
        from choreokit.events import default_registry
        from choreokit.services.runtime.discovery import load_event_modules

        async with DeadLetterStore(KafkaSettings(bootstrap=bootstrap)) as store:
            letters = await _select(store, ids, where)
            if dry_run:
                return letters
            if payload is not None:
                load_event_modules()
            results = await store.replay(
                letters, data=payload, registry=default_registry, to_topic=to_topic, force=force
            )
            if wait:
                results = await store.wait_outcomes(results, within=wait)
            return results

    outcome = run_async(act)
    failed = False
    for item in outcome:
        if isinstance(item, DeadLetter):
            click.echo(json.dumps(item.to_json()) if as_json else f"would replay {_line(item)}")
            continue
        failed |= item.result in ("error", "failed")
        if as_json:
            click.echo(json.dumps(item.to_json()))
        else:
            target = f"{item.topic} for group {item.group or '(every group)'}"
            reason = f": {item.error}" if item.error else ""
            click.echo(f"{item.dead_letter} -> {target}: {item.result}{reason}")
    if not outcome and not as_json:
        click.echo("no dead letters match", err=True)
    if failed:
        raise SystemExit(1)


@dlq.command()
@click.argument("ids", nargs=-1, metavar="[ID]...")
@filter_options
@click.option("--all", "everything", is_flag=True, help="Every dead letter the filters select.")
@click.option("--reason", required=True, help="Why (recorded in the audit topic).")
@click.option("--json", "as_json", is_flag=True, help="Print the count as JSON.")
def purge(
    ids: tuple[str, ...],
    everything: bool,
    reason: str,
    as_json: bool,
    bootstrap: str,
    **kwargs: Any,
) -> None:
    r"""Mark dead letters as dealt with; list hides them from then on.

    Kafka cannot delete single records: a purge is an entry in the
    choreo.dlq.audit topic (who, when, why) that list and the observer honour.

    \b
    Example:
      choreo dlq purge --error-type UnknownEventTypeError --reason "rogue producer, fixed"
    """
    where = _filter(kwargs)
    if not ids and not everything and not _selective(where):
        raise click.UsageError("give dead-letter IDs, filters, or --all")

    async def act() -> int:
        async with DeadLetterStore(KafkaSettings(bootstrap=bootstrap)) as store:
            letters = await _select(store, ids, where)
            return await store.purge(letters, reason=reason)

    count = run_async(act)
    click.echo(json.dumps({"purged": count}) if as_json else f"purged {count} dead letter(s)")


async def _read(bootstrap: str, where: DeadLetterFilter) -> list[DeadLetter]:
    async with DeadLetterStore(KafkaSettings(bootstrap=bootstrap)) as store:
        return await store.read(where)


async def _select(
    store: DeadLetterStore, ids: tuple[str, ...], where: DeadLetterFilter
) -> list[DeadLetter]:
    if not ids:
        return await store.read(where)
    letters = {
        letter.id: letter
        for letter in await store.read(DeadLetterFilter(include_purged=True, statuses=frozenset()))
    }
    chosen = []
    for dead_letter_id in ids:
        letter = letters.get(dead_letter_id)
        if letter is None:
            from choreokit.events.dlq import DeadLetterNotFoundError

            raise DeadLetterNotFoundError(
                f"no dead letter {dead_letter_id!r}; 'choreo dlq list' shows the ids"
            )
        chosen.append(letter)
    return chosen


def _read_data(data: str) -> bytes:
    if data == "@-":
        text = sys.stdin.read()
    elif data.startswith("@"):
        try:
            text = Path(data[1:]).read_text()
        except OSError as exc:
            raise click.BadParameter(f"cannot read {data[1:]}: {exc.strerror}") from None
    else:
        text = data
    try:
        json.loads(text)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--data") from None
    return text.encode()
