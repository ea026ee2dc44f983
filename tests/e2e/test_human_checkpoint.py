"""Human checkpoints, end to end on `choreo dev`: orders above the approval amount wait for a
person; an operator approves one in the observer's UI (Chromium, with a token) and it completes,
rejects another and it is compensated; an unauthenticated approval is a 401 that changes
nothing; and killing the waiting service and the observer while the flows wait loses nothing."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, expect

from choreokit.services.saga_observer.access import DEV_TOKEN_FILE
from tests.e2e.system import Dev, alive, rows
from tests.e2e.test_observer_ui import browser, watch_errors
from tests.observer_fixtures import ARTIFACTS
from tests.support import wait_until

__all__ = ["browser"]

pytestmark = pytest.mark.slow

ABOVE = 50_000


def order(order_id: str, cents_each: int) -> dict[str, Any]:
    return {
        "order_id": order_id,
        "customer_id": "cust-0001",
        "lines": [{"sku": "SKU-1", "quantity": 12, "unit_price_cents": cents_each}],
        "ship_to": {"country": "DE", "postal_code": "10115"},
    }


def awaiting(flow: dict[str, Any] | None) -> bool:
    return bool(
        flow
        and flow["status"] == "running"
        and any(
            e["reason"] == "awaiting-approval" and e["checkpoint"] == "payment"
            for e in flow["expected"]
        )
    )


def test_orders_above_the_amount_wait_for_a_person_across_restarts(
    browser: Browser, tmp_path: Path
) -> None:
    dev = Dev(tmp_path / "dev", env={"CHOREO_ORDERS_APPROVAL_ABOVE_CENTS": str(ABOVE)})
    dev.start()
    try:
        observer = dev.state()["urls"]["saga-observer"].rstrip("/")
        token = (dev.data_dir / DEV_TOKEN_FILE).read_text().strip()
        operator = {"Authorization": f"Bearer {token}"}
        flows: dict[str, str] = {}
        with httpx.Client(timeout=30) as client:
            for name in ("approve", "reject"):  # 12 x 5,000 = 60,000 cents: above the amount
                placed = client.post(f"{dev.orders_url}/orders", json=order(f"cp-{name}", 5_000))
                assert placed.status_code in (200, 202), placed.text
                flows[name] = placed.json()["correlation_id"]
            small = client.post(f"{dev.orders_url}/orders", json=order("cp-small", 100))
            assert small.status_code in (200, 202), small.text

            def flow(cid: str) -> dict[str, Any] | None:
                try:
                    found = client.get(f"{observer}/api/flows/{cid}")
                except httpx.HTTPError:
                    return None  # restarting
                return found.json() if found.status_code == 200 else None

            wait_until(
                lambda: all(awaiting(flow(c)) for c in flows.values()),
                timeout=60,
                what="both large orders awaiting approval",
            )
            small_cid = small.json()["correlation_id"]
            wait_until(
                lambda: (flow(small_cid) or {}).get("status") == "completed",
                timeout=60,
                what="the small order completed without a person",
            )
            waiting = flow(flows["approve"])
            assert waiting is not None
            (step,) = [e for e in waiting["expected"] if e["reason"] == "awaiting-approval"]
            assert step["roles"] == ["operator"]
            assert step["one_of"] == ["approval.granted", "approval.rejected"]

            # An approval without a token: 401, and nothing changes.
            body = {"step": "payment", "decision": "approve", "reason": "looks fine"}
            anonymous = client.post(f"{observer}/api/flows/{flows['approve']}/approvals", json=body)
            assert anonymous.status_code == 401
            audit_before = client.get(f"{observer}/api/audit", headers=operator).json()["total"]

            # Restart the waiting service and the observer while the flows wait.
            for service in ("payments", "saga-observer"):
                victim = dev.pid(service)
                os.kill(victim, signal.SIGKILL)

                def restarted(name: str = service) -> bool:
                    return dev.restarts(name) >= 1

                wait_until(restarted, timeout=90, what=f"{service} restarted")
                assert not alive(victim)
            wait_until(
                lambda: all(awaiting(flow(c)) for c in flows.values()),
                timeout=60,
                what="both flows still awaiting approval after the restarts",
            )
            with dev.db("payments") as conn:
                assert rows(conn, "select order_id from payments where order_id like 'cp-%'") == [
                    ("cp-small",)
                ], "no payment taken before approval"
            assert client.get(f"{observer}/api/audit", headers=operator).json()["total"] == (
                audit_before
            )

            # Approve in the UI: without a token the API answers 401 and the UI asks for one.
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            errors = watch_errors(page)
            page.goto(f"{observer}/#/flow/{flows['approve']}")
            expect(page.get_by_test_id("awaiting-approval")).to_be_visible(timeout=30_000)
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "observer-checkpoint.png"))
            page.get_by_test_id("approval-reason").fill("customer verified by phone")
            page.get_by_test_id("approve").click()
            page.locator("#token-input").fill(token)
            page.locator("#token-form button").click()
            # signing in draws the page again: a fresh, empty reason field
            expect(page.locator("#token-form")).to_have_count(0)
            expect(page.get_by_test_id("approval-reason")).to_have_value("", timeout=30_000)
            page.get_by_test_id("approval-reason").fill("customer verified by phone")
            page.get_by_test_id("approve").click()
            expect(page.get_by_test_id("approval-result")).to_contain_text(
                "approved by developer", timeout=30_000
            )
            assert [e for e in errors if "401" not in e] == []

            # Reject the other through the API, as any operator's tool would.
            reject = {"step": "payment", "decision": "reject", "reason": "address on a blocklist"}
            rejected = client.post(
                f"{observer}/api/flows/{flows['reject']}/approvals", json=reject, headers=operator
            )
            assert rejected.status_code == 200, rejected.text
            assert rejected.json()["result"] == "recorded"

            wait_until(
                lambda: (flow(flows["approve"]) or {}).get("status") == "completed",
                timeout=60,
                what="the approved order completed",
            )
            wait_until(
                lambda: (flow(flows["reject"]) or {}).get("status") == "compensated",
                timeout=60,
                what="the rejected order compensated",
            )

            # Decisions are final and idempotent per flow and checkpoint.
            again = client.post(
                f"{observer}/api/flows/{flows['reject']}/approvals", json=reject, headers=operator
            )
            assert again.status_code == 200
            assert again.json()["result"] == "already-decided"
            other = {**body, "reason": "changed my mind"}
            flipped = client.post(
                f"{observer}/api/flows/{flows['reject']}/approvals", json=other, headers=operator
            )
            assert flipped.status_code == 409

            # Recorded: who, when, what, why.
            entries = client.get(f"{observer}/api/audit", headers=operator).json()["items"]
            decisions = {
                (e["action"], e["target"], e["result"]): e
                for e in entries
                if e["action"].startswith("approval.")
            }
            approved = decisions[("approval.approve", f"{flows['approve']}#payment", "recorded")]
            assert approved["actor"] == "developer"
            assert approved["reason"] == "customer verified by phone"
            assert approved["at"]
            assert ("approval.reject", f"{flows['reject']}#payment", "recorded") in decisions
            assert ("approval.approve", f"{flows['reject']}#payment", "refused") in decisions

        with dev.db("payments") as conn:
            taken = dict(rows(conn, "select order_id, status from payments"))
        assert taken["cp-approve"] == "authorized"
        assert taken["cp-reject"] == "declined"
    finally:
        assert dev.stop() == 0
