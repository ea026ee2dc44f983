"""choreokit's pytest plugin: its broker fixture is a real embedded broker a Service can use."""

from __future__ import annotations

from choreokit.events import Event, KafkaSettings, Registry, Service
from choreokit.services.runtime import EmbeddedBroker, answers_kafka
from tests.support import unique, wait_for


async def test_the_plugin_broker_answers_kafka_and_carries_a_services_events(
    choreo_broker: EmbeddedBroker, choreo_kafka: KafkaSettings
) -> None:
    host, _, port = choreo_kafka.bootstrap.rpartition(":")
    assert choreo_kafka.bootstrap == choreo_broker.bootstrap
    assert answers_kafka(host, int(port))
    registry = Registry()
    topic = unique("plugin")

    class Pinged(Event, type="plugin.pinged", version=1, topic=topic, registry=registry):
        n: int

    seen: list[int] = []
    service = Service(unique("plugin-"), registry=registry, settings=choreo_kafka)

    @service.handler(Pinged)
    async def pinged(event: Pinged) -> None:
        seen.append(event.n)

    async with service:
        await service.publish(Pinged(n=7))
        await wait_for(lambda: seen == [7], what="the event handled")
