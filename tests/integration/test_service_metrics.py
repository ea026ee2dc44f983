"""A consumer-only service run by ``choreo run`` serves its event metrics on /metrics."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from choreokit.events import Envelope, KafkaSettings, encode_headers, new_event_id
from choreokit.services.runtime import free_port
from tests.integration.kafka_io import produce_raw
from tests.integration.metrics_service import TOPIC_ENV
from tests.support import unique

CHOREO = str(Path(sys.executable).with_name("choreo"))
ROOT = Path(__file__).resolve().parents[2]


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of the Prometheus sample ``name`` whose labels include ``labels``."""
    for line in text.splitlines():
        match = re.fullmatch(r"([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)", line)
        if match is None or match[1] != name:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match[2] or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(match[3])
    return None


def probe(topic: str, *, fail: bool) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    from datetime import UTC, datetime

    eid = new_event_id()
    envelope = Envelope(
        id=eid,
        source="/tests",
        type="metrics.probe",
        dataversion=1,
        time=datetime.now(UTC),
        correlation_id=eid,
    )
    value = b'{"fail": true}' if fail else b'{"fail": false}'
    return eid.encode(), value, encode_headers(envelope)


def test_a_consumer_only_service_serves_its_event_metrics_and_health(
    tmp_path: Path, kafka: KafkaSettings
) -> None:
    topic = unique("metrics")
    port = free_port()
    env = {
        **os.environ,
        "CHOREO_KAFKA_BOOTSTRAP": kafka.bootstrap,
        "CHOREO_METRICS_PORT": str(port),
        "CHOREO_DATA_DIR": str(tmp_path),
        TOPIC_ENV: topic,
        "PYTHONPATH": str(ROOT),
    }
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    log = (tmp_path / "service.log").open("wb")
    service = subprocess.Popen(
        [CHOREO, "run", "tests.integration.metrics_service:create", "--name", "probes"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert service.poll() is None, (tmp_path / "service.log").read_text()
            try:
                if get(f"{base}/healthz")[0] == 200:
                    break
            except OSError:
                pass  # not listening yet
            assert time.monotonic() < deadline, (tmp_path / "service.log").read_text()
            time.sleep(0.05)  # noqa: sleep-ok - polls a subprocess's port between checks
        records = [probe(topic, fail=False) for _ in range(5)] + [probe(topic, fail=True)]
        asyncio.run(produce_raw(kafka.bootstrap, topic, records))
        labels = {"messaging_consumer_group_name": "probes"}
        while True:
            status, text = get(f"{base}/metrics")
            assert status == 200
            handled = sample(text, "choreo_consumer_handled_total", **labels)
            dead = sample(text, "choreo_consumer_dead_lettered_total", **labels)
            # Lag is noted once a batch is committed, a moment after its records are counted.
            lag = sample(text, "choreo_consumer_lag", messaging_destination_name=topic)
            if handled == 5 and dead == 1 and lag == 0:
                break
            assert time.monotonic() < deadline, text
            time.sleep(0.05)  # noqa: sleep-ok - polls the endpoint between checks
        process = {"messaging_destination_name": topic, **labels}
        succeeded = {**process, "error_type": ""}  # Prometheus's value for "no such label"
        assert sample(text, "messaging_process_duration_seconds_count", **succeeded) == 5
        failed = {**process, "error_type": "choreokit.events.PermanentError"}
        assert sample(text, "messaging_process_duration_seconds_count", **failed) == 1
        assert sample(text, "messaging_client_consumed_messages_total", **process) == 6
        assert sample(text, "choreo_consumer_retries_total", **labels) == 0
        assert sample(text, "choreo_consumer_commit_failures_total", **labels) == 0
    finally:
        service.terminate()
        service.wait(timeout=30)
        log.close()
    assert service.returncode == 0, (tmp_path / "service.log").read_text()
