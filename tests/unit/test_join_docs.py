"""docs/joins.md's example, run: the declared join ships once both inputs came, whichever came
first, naming both; and abandons a shipment whose payment never came, saying what is missing.

The example declares its events in the default registry, so it runs in a process of its own
(other tests read that registry whole).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "joins.md"
EXAMPLE = re.compile(r"<!-- example: join -->\n```python\n(?P<code>.*?)\n```", re.S)

CHECK = """
import asyncio
from datetime import UTC, datetime, timedelta

from choreokit.testing import ServiceKit
from example import (
    PaymentAuthorized, ShipmentAbandoned, StockReserved, engine, ready, service,
)


async def main() -> None:
    await ready.create_tables()
    async with ServiceKit(service) as kit:
        paid = PaymentAuthorized(order_id="o-1", amount_cents=900)
        first = await kit.deliver(paid, correlation_id="f1")
        second = await kit.deliver(StockReserved(order_id="o-1"), correlation_id="f1")
        assert first.published == ()
        [shipped] = second.published
        assert shipped.type == "doc.shipment.requested"
        assert shipped.event.amount_cents == 900
        assert shipped.envelope.causation_id == second.envelope.id
        assert shipped.envelope.joined_ids == (first.envelope.id,)
        await kit.deliver(StockReserved(order_id="o-2"), correlation_id="f2")
        assert await ready.expire(datetime.now(UTC) + timedelta(minutes=6)) == 1
        [abandoned] = kit.published(ShipmentAbandoned)
        assert abandoned.event.missing == ("doc.payment.authorized",)
    await engine.dispose()
    print("ok")


asyncio.run(main())
"""


def test_the_documented_join_ships_once_and_abandons_on_its_deadline(tmp_path: Path) -> None:
    found = EXAMPLE.search(PAGE.read_text())
    assert found is not None
    (tmp_path / "example.py").write_text(found["code"] + "\n")
    (tmp_path / "check.py").write_text(CHECK)
    result = subprocess.run(
        [sys.executable, "check.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": f"{tmp_path}:{ROOT}", "PATH": ""},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
