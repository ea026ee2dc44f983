"""`choreo dev` under fire: services SIGKILLed mid-run are restarted; nothing is lost or done twice;
and when dev stops, nothing it started is left running."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.consistency import check_databases
from tests.e2e.system import ROOT, Dev, alive, choreo_args, rows, run_demo
from tests.support import wait_until

pytestmark = pytest.mark.slow


def demo_in_background(dev: Dev, orders: int) -> tuple[threading.Thread, dict[str, Any]]:
    result: dict[str, Any] = {}

    def go() -> None:
        result.update(
            run_demo(
                "--bootstrap",
                dev.bootstrap,
                "--orders-url",
                dev.orders_url,
                "--orders",
                str(orders),
                "--seed",
                "7",
                "--rate",
                "20",
            )
        )

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    return thread, result


def assert_one_completion_per_payment(bootstrap: str) -> None:
    """Exactly one shipment.* per authorized payment, in its flow, naming it: as the cause when
    the payment completed the join, else among the joined inputs (``ce_joined``)."""
    import asyncio
    import json

    from tests.integration.kafka_io import all_records, headers_of

    def read(topic: str) -> list[Any]:
        return asyncio.run(all_records(bootstrap, topic))

    payments = {}
    for record in read("payments"):
        h = headers_of(record)
        if h["ce_type"] == "payment.authorized":
            payments[json.loads(record.value)["order_id"]] = h
    completions: dict[str, set[str]] = {}
    for record in read("shipping"):
        h = headers_of(record)
        order_id = json.loads(record.value)["order_id"]
        completions.setdefault(order_id, set()).add(h["ce_id"])
        payment = payments[order_id]
        named = {h["ce_causationid"], *h.get("ce_joined", "").split(",")}
        assert payment["ce_id"] in named, (h, payment)
        assert h["ce_correlationid"] == payment["ce_correlationid"]
    assert set(completions) == set(payments)
    assert all(len(ids) == 1 for ids in completions.values()), completions


def count(dev: Dev, db: str, sql: str) -> int:
    try:
        with dev.db(db) as conn:
            return int(rows(conn, sql)[0][0])
    except Exception:  # noqa: BLE001 - the table may not exist yet
        return 0


def test_payments_killed_mid_demo_is_restarted_and_charges_once(tmp_path: Path) -> None:
    dev = Dev(tmp_path / "dev")
    dev.start()
    try:
        thread, result = demo_in_background(dev, 120)
        wait_until(
            lambda: count(dev, "payments", "select count(*) from payments") >= 15,
            timeout=120,
            what="payments to be well under way",
        )
        victim = dev.pid("payments")
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: dev.restarts("payments") >= 1, timeout=60, what="payments restarted")
        assert dev.pid("payments") != victim
        thread.join(timeout=600)
        assert result.get("exit_code") == 0, result.get("stderr")
        assert result["unexplained"] == []
        with dev.db("payments") as conn:
            per_order = rows(conn, "select order_id, count(*) from payments group by order_id")
        assert all(n == 1 for _, n in per_order)
    finally:
        assert dev.stop() == 0
    check_databases(dev.data_dir)
    assert not [p for p in dev.seen_pids if alive(p)], "choreo dev left processes behind"


def test_shipping_killed_mid_carrier_sequence_resumes_without_a_second_label(
    tmp_path: Path,
) -> None:
    slow_carrier = {"CHOREO_SHIPPING_CARRIER_LATENCY": "150ms"}
    dev = Dev(tmp_path / "dev", env=slow_carrier)
    dev.start()
    try:
        thread, result = demo_in_background(dev, 40)
        mid_sequence = (
            "select count(*) from choreo_orchestration_runs r where r.status = 'running' and "
            "exists (select 1 from choreo_orchestration_steps s where s.run_id = r.run_id "
            "and s.status = 'done')"
        )
        wait_until(
            lambda: count(dev, "shipping", mid_sequence) >= 1,
            timeout=180,
            what="a shipment between two carrier steps",
        )
        os.kill(dev.pid("shipping"), signal.SIGKILL)
        wait_until(lambda: dev.restarts("shipping") >= 1, timeout=60, what="shipping restarted")
        thread.join(timeout=600)
        assert result.get("exit_code") == 0, result.get("stderr")
        assert result["unexplained"] == []
        with dev.db("carrier") as conn:
            labels = rows(conn, "select order_id, count(*) from carrier_labels group by order_id")
        assert labels
        assert all(n == 1 for _, n in labels)
        with dev.db("shipping") as conn:
            resumed = rows(
                conn,
                "select count(*) from choreo_orchestration_runs where status = 'running'",
            )
        assert resumed == [(0,)]
        assert_one_completion_per_payment(dev.bootstrap)
    finally:
        assert dev.stop() == 0
    check_databases(dev.data_dir)
    assert not [p for p in dev.seen_pids if alive(p)], "choreo dev left processes behind"


def test_dev_stops_everything_on_ctrl_c_and_dies_with_its_children(tmp_path: Path) -> None:
    dev = Dev(tmp_path / "dev")
    dev.start()
    started = set(dev.seen_pids)
    assert len(started) >= 5  # broker and four services
    assert dev.stop() == 0
    assert not [p for p in started if alive(p)]

    # And if the supervisor itself is killed, the kernel takes its children down too.
    second = Dev(tmp_path / "dev2")
    second.start()
    children = set(second.seen_pids)
    assert second.process is not None
    os.kill(second.process.pid, signal.SIGKILL)
    second.process.wait()
    wait_until(lambda: not [p for p in children if alive(p)], timeout=30, what="orphans to die")


def test_dev_refuses_to_reset_a_directory_it_did_not_make(tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.txt").write_text("do not delete")
    result = subprocess.run(
        choreo_args("dev", "--data-dir", str(precious)),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "refusing to reset it" in result.stderr
    assert (precious / "thesis.txt").exists()
