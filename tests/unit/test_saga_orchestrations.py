"""The observer's view of in-service orchestration runs: read from a flow's orchestration.run
events (the very records shipping publishes), served with the flow, a broken report shown as
unreadable rather than dropped."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path

from choreokit.events import encode_payload
from choreokit.events.orchestration import OrchestrationRun
from choreokit.services.example.contracts.shipping import UNSERVED_PREFIX
from choreokit.services.example.shipping.app import build
from choreokit.services.example.shipping.settings import ShippingSettings
from choreokit.services.saga_observer.orchestrations import StoredReport, orchestration_runs
from choreokit.services.saga_observer.records import micros
from choreokit.testing import drive
from tests.order_flows import Outcome, Step, as_records, mix
from tests.unit.example.support import order, runtime
from tests.unit.example.test_shipping import authorized
from tests.unit.test_saga_store import NOW, Fed, opened

RELIABLE = ShippingSettings(carrier_latency=timedelta(0), carrier_failure_rate=0.0)


async def shipping_report(tmp_path: Path, *, postal_code: str = "10115") -> OrchestrationRun:
    """The orchestration.run that the real shipping service publishes for one order."""
    async with drive(build(runtime("shipping", tmp_path), RELIABLE)[1]) as kit:
        await kit.deliver(
            order("o-1", ("SKU-1", 1, 100), postal_code=postal_code), correlation_id="f"
        )
        paid = await kit.deliver(authorized("o-1"), correlation_id="f")
    return paid.one(OrchestrationRun)


def stored(report: OrchestrationRun | None, *, payload: str | None = None) -> StoredReport:
    text = payload if report is None else encode_payload(report).decode()
    return StoredReport("run-1", "shipping", "pay-1", micros(NOW), text)


async def test_a_compensated_run_is_read_with_its_failure_and_compensation(tmp_path: Path) -> None:
    report = await shipping_report(tmp_path, postal_code=f"{UNSERVED_PREFIX}1")
    [run] = orchestration_runs([stored(report)])
    assert run.readable
    assert (run.service, run.orchestration, run.status) == ("shipping", "shipment", "compensated")
    assert (run.cause_id, run.failed_step) == ("pay-1", "pickup")
    steps = {s.name: s for s in run.steps}
    assert list(steps) == ["quote", "label", "pickup"]
    assert steps["label"].compensated
    assert steps["label"].compensation_attempts == 1
    assert steps["pickup"].status == "failed"
    assert steps["pickup"].error_type == run.error_type
    assert steps["quote"].retries == 0
    assert not steps["quote"].compensated


def test_a_report_the_observer_cannot_read_is_listed_as_unreadable() -> None:
    too_big = stored(None, payload=None)  # larger than the payload limit: not kept
    not_json = stored(None, payload="{not json")
    out_of_bounds = stored(None, payload='{"orchestration": "", "steps": "many"}')
    runs = orchestration_runs([too_big, not_json, out_of_bounds])
    assert [r.readable for r in runs] == [False, False, False]
    assert {r.service for r in runs} == {"shipping"}
    assert all(r.steps == [] for r in runs)


async def test_the_flow_json_has_each_run_under_its_service(tmp_path: Path) -> None:
    """An order flow plus shipping's report, ingested as records: GET /api/flows/{id} has it."""
    report = await shipping_report(tmp_path / "shipping")
    [flow] = mix(1, outcomes=[Outcome.HAPPY], start=NOW)
    paid = next(s for s in flow.steps if s.event.event_info().type == "payment.authorized")
    shipped = next(s for s in flow.steps if s.event.event_info().type == "shipment.completed")
    run = dataclasses.replace(
        shipped, event=report, event_id=f"{shipped.event_id}-run", time=shipped.time
    )
    steps: list[Step] = [*flow.steps, run]
    async with opened(tmp_path / "observer.sqlite3") as (store, queries):
        await Fed(store).feed(as_records(steps), batch=10)
        detail = await queries.flow(flow.correlation_id)
    assert detail is not None
    assert detail.status == "completed"  # one more event of the flow changes no judgement
    assert detail.graph.connected
    [seen] = detail.orchestrations
    assert (seen.event_id, seen.service, seen.cause_id) == (run.event_id, "shipping", paid.event_id)
    assert [(s.name, s.status) for s in seen.steps] == [
        ("quote", "done"),
        ("label", "done"),
        ("pickup", "done"),
    ]
    assert "orchestrations" in detail.model_dump(mode="json")
