"""A consumer-only service for ``choreo run tests.integration.metrics_service:create``.

It handles ``metrics.probe`` events on ``$CHOREO_TEST_METRICS_TOPIC``: a probe
with ``fail`` set raises a permanent error (dead letter); the others succeed.
"""

from __future__ import annotations

import os

from choreokit.events import Event, PermanentError, Registry, Service
from choreokit.services.runtime.app import Runtime, ServiceApp

TOPIC_ENV = "CHOREO_TEST_METRICS_TOPIC"


def create(runtime: Runtime) -> ServiceApp:
    """Build the probe consumer."""
    registry = Registry()

    class Probe(
        Event, type="metrics.probe", version=1, topic=os.environ[TOPIC_ENV], registry=registry
    ):
        fail: bool = False

    service = runtime.prepare(Service(runtime.name, registry=registry, settings=runtime.kafka))

    @service.handler(Probe)
    async def probe(event: Probe) -> None:
        if event.fail:
            raise PermanentError("asked to fail")

    return ServiceApp(service, on_ready=runtime.mark_ready)
