"""The observer and a join's output: ``ce_joined`` is stored, the output gets an edge from every
input it joined (one node, several parents), and the spec's step after the joined input counts
as taken, so the flow is judged as if the output named that input as its cause."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

from choreokit.events import decode, encode_headers
from tests.order_flows import Outcome, as_records, order_flow
from tests.support import record
from tests.unit.test_saga_store import NOW, Fed, opened


async def test_a_join_output_has_a_parent_per_input_and_completes_the_flow(
    tmp_path: Path,
) -> None:
    flow = order_flow(Outcome.HAPPY, index=2, rng=random.Random(2), start=NOW)
    by_type = {type(s.event).event_info().type: s for s in flow.steps}
    placed, paid = by_type["order.placed"], by_type["payment.authorized"]
    shipped = by_type["shipment.completed"]
    records = []
    for original in as_records(flow.steps):
        r = original
        envelope = decode(r.headers, r.value, fallback_time=NOW).envelope
        if envelope.id == shipped.event_id:
            # The order completed shipping's join: it is the cause; the payment rides in ce_joined.
            joined = dataclasses.replace(
                envelope, causation_id=placed.event_id, joined=paid.event_id
            )
            r = record(
                r.topic,
                value=r.value,
                headers=encode_headers(joined),
                offset=r.offset,
                partition=r.partition,
                key=r.key,
            )
        records.append(r)
    async with opened(tmp_path / "db.sqlite3") as (store, queries):
        await Fed(store).feed(records, batch=3)
        detail = await queries.flow(flow.correlation_id)
    assert detail is not None
    assert detail.status == "completed"
    assert detail.expected == []
    edges = {(e.cause, e.effect) for e in detail.graph.edges}
    assert (placed.event_id, shipped.event_id) in edges
    assert (paid.event_id, shipped.event_id) in edges
    [output] = [e for e in detail.events if e.id == shipped.event_id]
    assert output.joined == [paid.event_id]
    assert output.causation_id == placed.event_id
