"""docs/reliability.md's "Exactly-once" examples, run: the settings in Python and from the
environment, and a service built on them committing a hop in a transaction on Apache Kafka
(refused on Tansu, as the page says)."""

from __future__ import annotations

import json
import shlex
from typing import Any

import pytest

from choreokit.events import (
    HandlerContext,
    Isolation,
    KafkaSettings,
    Service,
    TransactionsUnavailableError,
)
from tests.integration.kafka_io import records_to_end
from tests.integration.test_reliability_docs import examples
from tests.support import catalog, unique, wait_for


def documented_settings() -> KafkaSettings:
    scope: dict[str, Any] = {}
    exec(examples()["exactly-once"], scope)
    assert scope["billing"].name == "billing"
    settings = scope["settings"]
    assert isinstance(settings, KafkaSettings)
    return settings


def test_the_environment_example_means_the_python_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """Line 1 gives the Python example's settings; line 2 a read_committed reader."""
    lines = examples()["exactly-once-env"].splitlines()
    assert len(lines) == 2
    documented = documented_settings()
    for line, service in zip(lines, ("billing", "shipping"), strict=True):
        *assignments, choreo, command, name = shlex.split(line)
        assert (choreo, command, name) == ("choreo", "run", service)
        with monkeypatch.context() as env:
            for assignment in assignments:
                key, value = assignment.split("=", 1)
                env.setenv(key, value)
            settings = KafkaSettings()
        if service == "billing":
            assert settings.transactions is documented.transactions is True
            assert settings.transactional_id == documented.transactional_id
            assert settings.isolation_level() is Isolation.READ_COMMITTED
        else:
            assert settings.transactions is False
            assert settings.isolation_level() is Isolation.READ_COMMITTED


@pytest.mark.engines("tansu", "kafka")
async def test_a_service_on_the_documented_settings_commits_in_transactions(
    kafka: KafkaSettings, engine: str
) -> None:
    settings = documented_settings().model_copy(
        update={"bootstrap": kafka.bootstrap, "transactional_id": unique("billing-")}
    )
    cat = catalog()
    billing = Service(
        unique("billing"), registry=cat.registry, settings=settings, publishes=[cat.out]
    )

    @billing.handler(cat.v2)
    async def charge(event: object, ctx: HandlerContext) -> None:
        await ctx.publish(cat.out(n=event.n))  # type: ignore[attr-defined]

    if engine == "tansu":
        with pytest.raises(TransactionsUnavailableError, match="use Apache Kafka"):
            await billing.start()
        return
    feeder = Service(unique("shop"), registry=cat.registry, settings=kafka, publishes=[cat.v2])
    async with billing, feeder:
        await feeder.publish(cat.v2(n=7, label="x"))
        await wait_for(lambda: billing.stats.handled == 1, timeout=30, what="the hop")
    assert billing.stats.transactions_committed >= 1
    [output] = await records_to_end(kafka.bootstrap, cat.out_topic)
    assert json.loads(output.value or b"") == {"n": 7}
