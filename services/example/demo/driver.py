"""One demo run against a running system: place the orders, follow the flows, judge them."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Mapping, Set
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import httpx

from choreokit.events import ChoreoError, KafkaSettings
from choreokit.services.example.demo.plan import Kind, Outcome, PlannedOrder, plan
from choreokit.services.example.demo.report import Summary, summarise
from choreokit.services.example.demo.tracker import APPROVALS_TOPIC, TOPICS, FlowTracker

OBSERVER_PAGE = 50
"""Flows per page when reading the observer's verdicts (every observer allows 50)."""


class IntakeRefusedError(ChoreoError):
    """The order intake did not accept an order."""


async def drive(
    *,
    count: int,
    seed: int,
    bootstrap: str,
    orders_url: str,
    wait: timedelta,
    concurrency: int,
    rate: float,
    urls: Mapping[str, str],
    orders_token: str | None = None,
    operator_token: str | None = None,
    observer_token: str | None = None,
) -> Summary:
    """Place ``count`` orders at ``rate`` per second (0: at once); follow every flow to its end.

    Waits at most ``wait`` for the flows. ``orders_token`` is the intake's bearer token
    (``CHOREO_ORDERS_TOKEN`` of the orders service), if it asks for one; ``observer_token``
    the observer's (a viewer's at least), if its reads need one. With an ``operator_token``
    (and a saga observer in ``urls``), some orders are above the approval amount: the demo
    approves or rejects them through the observer's API.
    """
    observer = urls.get("saga-observer")
    approvals = operator_token is not None and observer is not None
    planned = plan(count, seed, approvals=approvals)
    topics = (*TOPICS, APPROVALS_TOPIC) if approvals else TOPICS
    tracker = FlowTracker(KafkaSettings(bootstrap=bootstrap), topics)
    began = datetime.now(UTC) - timedelta(seconds=1)  # the observer judges by start time
    decided: dict[str, str] = {}
    await tracker.start(from_end=True)
    try:
        correlation = await _place(planned, orders_url, concurrency, rate, orders_token)
        deciding = None
        if approvals:
            assert observer is not None
            assert operator_token is not None
            deciding = asyncio.ensure_future(
                _decide(tracker, planned, correlation, observer, operator_token, decided, wait)
            )
        try:
            await _follow(tracker, planned, correlation, wait)
        finally:
            if deciding is not None:
                deciding.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await deciding
    finally:
        await tracker.stop()
    summary = summarise(
        planned,
        correlation,
        tracker.flows,
        seed=seed,
        seconds=_span(tracker, planned, correlation),
        urls=urls,
        bootstrap=bootstrap,
    )
    if approvals:
        summary = replace(summary, approvals=dict(Counter(decided.values())))
    if observer is not None:
        ours = set(correlation.values())
        observed = await _observer_counts(observer, began, ours, wait, observer_token)
        summary = replace(summary, observer=observed)
    return summary


async def _observer_counts(
    url: str,
    since: datetime,
    flows: Set[str],
    wait: timedelta,
    token: str | None = None,
) -> dict[str, int] | None:
    """The observer's verdicts on this run's ``flows``, once it has judged them all.

    Only the run's own flows count (by correlation id), not whatever else started in
    the same window: an earlier run's last flows, or another demo's against the same
    system. ``since`` only narrows the listing. Returns ``None`` if the observer had not
    judged them all within ``wait``.
    """
    deadline = time.monotonic() + wait.total_seconds()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(base_url=url.rstrip("/"), timeout=10, headers=headers) as client:
        while True:
            try:
                statuses = await _observer_statuses(client, since, flows)
                if len(statuses) == len(flows) and "running" not in statuses.values():
                    return dict(Counter(statuses.values()))
            except (httpx.HTTPError, KeyError, TypeError, ValueError):
                pass  # not up yet, or answering with an error: look again
            if time.monotonic() > deadline:
                return None
            await asyncio.sleep(0.2)


async def _observer_statuses(
    client: httpx.AsyncClient, since: datetime, flows: Set[str]
) -> dict[str, str]:
    """Map correlation id -> the observer's status, for those of ``flows`` it has seen."""
    found: dict[str, str] = {}
    offset = 0
    while True:
        params: dict[str, str | int] = {
            "saga": "order",
            "since": since.isoformat(),
            "sort": "started_at",  # oldest first: flows started meanwhile go to the end
            "limit": OBSERVER_PAGE,
            "offset": offset,
        }
        response = await client.get("/api/flows", params=params)
        response.raise_for_status()
        page = response.json()
        items = page["items"]
        for item in items:
            if item["correlation_id"] in flows:
                found[item["correlation_id"]] = str(item["status"])
        offset += len(items)
        if not items or offset >= int(page["total"]) or len(found) == len(flows):
            return found


async def _decide(  # noqa: PLR0917 - the run's parts, passed on once
    tracker: FlowTracker,
    planned: list[PlannedOrder],
    correlation: Mapping[str, str],
    observer: str,
    token: str,
    decided: dict[str, str],
    wait: timedelta,
) -> None:
    """Approve or reject each waiting order of the approval kinds, as an operator would.

    A flow is decided once the observer judged it as awaiting approval (until then
    it answers 409, and the demo asks again).
    """
    wanted = {
        correlation[o.order_id]: ("approve" if o.kind is Kind.APPROVED else "reject")
        for o in planned
        if o.kind in (Kind.APPROVED, Kind.REJECTED) and o.order_id in correlation
    }
    deadline = time.monotonic() + wait.total_seconds()
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(
        base_url=observer.rstrip("/"), timeout=10, headers=headers
    ) as client:
        while len(decided) < len(wanted) and time.monotonic() < deadline:
            for cid, decision in wanted.items():
                if cid in decided or "approval.requested" not in tracker.flow(cid).types:
                    continue
                body = {"step": "payment", "decision": decision, "reason": "choreo demo"}
                try:
                    response = await client.post(f"/api/flows/{cid}/approvals", json=body)
                except httpx.HTTPError:
                    continue  # the observer is busy or restarting: ask again
                if response.status_code == httpx.codes.OK:
                    decided[cid] = response.json()["decision"]
                elif response.status_code in (httpx.codes.UNAUTHORIZED, httpx.codes.FORBIDDEN):
                    raise IntakeRefusedError(
                        "the saga observer refused the demo's operator token: "
                        f"{response.text[:200]}"
                    )
            await asyncio.sleep(0.2)


async def _place(
    planned: list[PlannedOrder],
    orders_url: str,
    concurrency: int,
    rate: float,
    token: str | None = None,
) -> dict[str, str]:
    correlation: dict[str, str] = {}
    gate = asyncio.Semaphore(concurrency)
    began = time.monotonic()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(base_url=orders_url, timeout=30, headers=headers) as client:

        async def place(order: PlannedOrder) -> None:
            if rate > 0:
                # A storefront's steady stream, not a burst: order n goes out at n / rate.
                await asyncio.sleep(max(0.0, began + order.index / rate - time.monotonic()))
            async with gate:
                try:
                    response = await client.post(order.path, json=order.body)
                except httpx.TransportError as exc:
                    raise IntakeRefusedError(
                        f"cannot reach the order intake at {orders_url} ({exc!r}); is the system "
                        "running? (without --bootstrap, 'choreo demo' starts one; with it, "
                        "--orders-url names its intake)"
                    ) from None
            if response.status_code not in (200, 202):
                raise IntakeRefusedError(
                    f"the order intake refused {order.order_id}: "
                    f"{response.status_code} {response.text[:300]}"
                )
            correlation[order.order_id] = response.json()["correlation_id"]

        await asyncio.gather(*(place(o) for o in planned))
    return correlation


async def _follow(
    tracker: FlowTracker,
    planned: list[PlannedOrder],
    correlation: Mapping[str, str],
    wait: timedelta,
) -> None:
    deadline = time.monotonic() + wait.total_seconds()
    pending = {correlation[o.order_id] for o in planned}
    while pending:
        pending = {c for c in pending if tracker.flow(c).judge()[0] is Outcome.RUNNING}
        remaining = deadline - time.monotonic()
        if not pending or remaining <= 0:
            return
        tracker.changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(tracker.changed.wait(), remaining)


def _span(
    tracker: FlowTracker, planned: list[PlannedOrder], correlation: Mapping[str, str]
) -> float:
    """Seconds from the first order placed to the last flow's end."""
    flows = [tracker.flow(correlation[o.order_id]) for o in planned if o.order_id in correlation]
    starts = [s for f in flows if (s := f.started_at) is not None]
    ends = [e for f in flows if (e := f.judge()[2]) is not None]
    if not starts or not ends:
        return 0.0
    return max((max(ends) - min(starts)).total_seconds(), 1e-3)
