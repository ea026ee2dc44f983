"""Schemathesis against a real gateway process: generated requests, from the served OpenAPI
document, must never get a 5xx or an answer that contradicts the document."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from choreokit.events import KafkaSettings, Registry
from choreokit.services.gateway import GatewayApp, GatewaySettings, KeyStore
from choreokit.services.runtime import EmbeddedBroker
from tests.integration.gateway_harness import event_module, gateway_process, key

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    ignored_auth,
]
EXAMPLES = 60  # per operation and mode: quick enough for every run, wide enough to find


FUZZ_KEY = key("fuzz", types=("*",))
RATE = "10000"  # the fuzzer is one client sending as fast as it can


def served_document() -> dict[str, Any]:
    """The OpenAPI document the gateway serves (built here, without a broker or a socket)."""
    app = GatewayApp(
        GatewaySettings(rate=float(RATE)),
        kafka=KafkaSettings(),
        registry=Registry(),
        keys=KeyStore([FUZZ_KEY.entry]),
    )
    api, _ = app.build()
    return api.openapi()


schema = schemathesis.openapi.from_dict(served_document())
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
    max_examples=EXAMPLES,
    deterministic=True,
)


@pytest.fixture(scope="module")
def gateway_url(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    module = event_module(tmp)
    with gateway_process(
        broker.bootstrap, [FUZZ_KEY], tmp, CHOREO_GATEWAY_RATE=RATE, **module.env
    ) as running:
        served = httpx.get(f"{running.url}/openapi.json").json()
        assert served == served_document(), "the fuzzer must see what the gateway serves"
        yield running.url


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_generated_requests_get_documented_answers(case: Case[Any], gateway_url: str) -> None:
    case.call_and_validate(base_url=gateway_url, headers=FUZZ_KEY.auth, checks=CHECKS)
