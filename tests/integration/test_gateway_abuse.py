"""The gateway under abuse: failed logins limited per address, slow senders cut off."""

from __future__ import annotations

import asyncio
import time

import httpx

from choreokit.events import KafkaSettings
from choreokit.services.runtime import EmbeddedBroker
from tests.integration.gateway_harness import key, running_gateway, structured
from tests.support import catalog, unique

STRUCTURED = {"Content-Type": "application/cloudevents+json"}


async def test_failed_logins_from_one_address_are_answered_429_for_a_while(
    broker: EmbeddedBroker,
) -> None:
    cat = catalog()
    acme = key("acme", types=("item.*",))
    kafka = KafkaSettings(bootstrap=broker.bootstrap)
    body = structured("item.added", unique("e-"), {"n": 1, "label": "x"}, version=2)
    async with (
        running_gateway(
            kafka, registry=cat.registry, keys=[acme], auth_failures=3, auth_failure_window="2s"
        ) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as client,
    ):
        wrong = {"Authorization": "Bearer ck_acme.guessed", **STRUCTURED}
        for _ in range(3):
            assert (await client.post("/events", headers=wrong, json=body)).status_code == 401
        blocked = await client.post("/events", headers={**acme.auth, **STRUCTURED}, json=body)
        assert blocked.status_code == 429, blocked.text
        assert int(blocked.headers["retry-after"]) >= 1
        assert "failed authentications" in blocked.json()["detail"]
        deadline = time.monotonic() + 10
        while (
            answer := await client.post("/events", headers={**acme.auth, **STRUCTURED}, json=body)
        ).status_code == 429:
            assert time.monotonic() < deadline, "still blocked after the window"
            await asyncio.sleep(0.1)  # noqa: sleep-ok - waits out the failure window
        assert answer.status_code == 202, answer.text


async def test_a_request_head_that_trickles_in_is_cut_off(broker: EmbeddedBroker) -> None:
    cat = catalog()
    kafka = KafkaSettings(bootstrap=broker.bootstrap)
    async with running_gateway(
        kafka, registry=cat.registry, keys=[key("acme", types=("item.*",))], header_timeout="0.5s"
    ) as gateway:
        host, port = gateway.url.removeprefix("http://").rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        started = time.monotonic()
        writer.write(b"POST /events HTTP/1.1\r\nHost: x\r\nAuthorization: Bea")
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 10) == b""
        assert time.monotonic() - started < 5
        writer.close()
