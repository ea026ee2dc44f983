"""docs/joins.md's example, run: the declared join ships once both inputs came, whichever came
first, naming both; and abandons a shipment whose payment never came, saying what is missing."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from choreokit.testing import ServiceKit

PAGE = Path(__file__).resolve().parents[2] / "docs" / "joins.md"
EXAMPLE = re.compile(r"<!-- example: join -->\n```python\n(?P<code>.*?)\n```", re.S)


@pytest.fixture
def scope(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.chdir(tmp_path)  # the example's SQLite file lands here
    found = EXAMPLE.search(PAGE.read_text())
    assert found is not None
    namespace: dict[str, Any] = {"__name__": "docs_joins_example"}
    exec(found["code"], namespace)
    return namespace


async def test_the_documented_join_ships_once_and_abandons_on_its_deadline(
    scope: dict[str, Any],
) -> None:
    ready, service = scope["ready"], scope["service"]
    reserved, paid = scope["StockReserved"], scope["PaymentAuthorized"]
    await ready.create_tables()
    try:
        async with ServiceKit(service) as kit:
            first = await kit.deliver(paid(order_id="o-1", amount_cents=900), correlation_id="f1")
            second = await kit.deliver(reserved(order_id="o-1"), correlation_id="f1")
            assert first.published == ()
            [shipped] = second.published
            assert shipped.type == "doc.shipment.requested"
            shipment: Any = shipped.event  # a class the example declared
            assert shipment.amount_cents == 900
            assert first.envelope is not None
            assert second.envelope is not None
            assert shipped.envelope.causation_id == second.envelope.id
            assert shipped.envelope.joined_ids == (first.envelope.id,)
            await kit.deliver(reserved(order_id="o-2"), correlation_id="f2")
            assert await ready.expire(datetime.now(UTC) + timedelta(minutes=6)) == 1
            [abandoned] = kit.published(scope["ShipmentAbandoned"])
            abandonment: Any = abandoned.event
            assert abandonment.missing == ("doc.payment.authorized",)
    finally:
        await scope["engine"].dispose()
