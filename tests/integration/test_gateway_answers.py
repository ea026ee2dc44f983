"""Every error answer of POST /events, over real HTTP: its status, its problem document, and
that nothing reached Kafka (the topics' end offsets did not move)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import pytest_asyncio

from choreokit.events import APPROVALS_TOPIC, ApprovalGranted, KafkaSettings, ensure_topics
from choreokit.services.gateway import GatewayApp
from choreokit.services.runtime import EmbeddedBroker
from tests.integration.gateway_harness import (
    Key,
    binary_headers,
    key,
    raw_post,
    running_gateway,
    structured,
)
from tests.integration.kafka_io import end_offsets
from tests.support import Catalog, catalog, unique

pytestmark = pytest.mark.asyncio(loop_scope="module")

MAX_BODY = 64 * 1024
MAX_BATCH = 5
STRUCTURED = {"Content-Type": "application/cloudevents+json"}
BATCH = {"Content-Type": "application/cloudevents-batch+json"}


@dataclass(frozen=True)
class Setup:
    cat: Catalog
    acme: Key
    outsider: Key
    wildcard: Key
    approver: Key
    gateway: GatewayApp
    bootstrap: str

    async def offsets(self) -> dict[str, dict[int, int]]:
        return {
            topic: await end_offsets(self.bootstrap, topic)
            for topic in (self.cat.topic, self.cat.out_topic, APPROVALS_TOPIC)
        }


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def setup(broker: EmbeddedBroker) -> AsyncIterator[Setup]:
    """One gateway for the module: a small body limit and batch size, three keys.

    Its registry declares ``approval.granted`` too, a toolkit report type the
    observer trusts: a key granted ``*`` may not publish it, one naming it may.
    """
    cat = catalog()
    cat.registry.register(ApprovalGranted)
    acme = key(
        "acme",
        types=("item.added", "item.missing"),
        sources=("/partners/acme", "/partners/acme/*"),
    )
    outsider = key("outsider", types=("*",))  # minted, never configured
    wildcard = key("wildcard", types=("*",), trusted=True)
    approver = key("approver", types=("approval.granted",), trusted=True)
    kafka = KafkaSettings(bootstrap=broker.bootstrap)
    await ensure_topics(kafka, [APPROVALS_TOPIC])
    async with running_gateway(
        kafka,
        registry=cat.registry,
        keys=[acme, wildcard, approver],
        max_body=MAX_BODY,
        max_batch=MAX_BATCH,
    ) as gateway:
        yield Setup(cat, acme, outsider, wildcard, approver, gateway, broker.bootstrap)


def valid(event_id: str | None = None, **extra: Any) -> dict[str, Any]:
    return structured(
        "item.added", event_id or unique("e-"), {"n": 1, "label": "x"}, version=2, **extra
    )


Request = Callable[[Setup], dict[str, Any]]


def binary(headers: dict[str, str], body: bytes, auth: bool = True) -> Request:
    return lambda s: {"headers": {**(s.acme.auth if auth else {}), **headers}, "content": body}


def doc(content: Any, content_type: dict[str, str] = STRUCTURED) -> Request:
    body = content if isinstance(content, bytes) else json.dumps(content).encode()
    return lambda s: {"headers": {**s.acme.auth, **content_type}, "content": body}


V2 = b'{"n": 1, "label": "x"}'
NESTED = b'{"specversion":"1.0","id":"n","source":"/partners/acme","type":"item.added","data":' + (
    b'{"n":' * 5000 + b"1" + b"}" * 5000 + b"}"
)

CASES: list[tuple[str, int, Request, dict[str, str]]] = [
    # 400: not a well-formed CloudEvent
    (
        "binary without ce-id",
        400,
        binary(
            {k: v for k, v in binary_headers("item.added", "x", version=2).items() if k != "ce-id"},
            V2,
        ),
        {"attribute": "id"},
    ),
    (
        "json without any ce- header",
        400,
        binary({"Content-Type": "application/json"}, V2),
        {"attribute": "specversion"},
    ),
    ("specversion 0.3", 400, doc(valid(specversion="0.3")), {"attribute": "specversion"}),
    ("structured body is not JSON", 400, doc(b'{"specversion": "1.0", '), {}),
    ("structured body is not an object", 400, doc(["not", "an", "event"]), {}),
    ("batch body is not an array", 400, doc(valid(), BATCH), {}),
    (
        "the same id twice in a batch",
        400,
        doc([valid("dup"), valid("dup")], BATCH),
        {"attribute": "id", "index": "1"},
    ),
    (
        "dataversion is not a number",
        400,
        doc(valid(dataversion="v2")),
        {"attribute": "dataversion"},
    ),
    ("time is not RFC 3339", 400, doc(valid(time="yesterday")), {"attribute": "time"}),
    ("time without an offset", 400, doc(valid(time="2026-01-01T00:00:00")), {"attribute": "time"}),
    ("an id with control characters", 400, doc(valid("a\u0001b")), {"attribute": "id"}),
    ("an id over 256 characters", 400, doc(valid("i" * 300)), {"attribute": "id"}),
    (
        "an attribute that is not a string",
        400,
        doc(valid(correlationid=7)),
        {"attribute": "correlationid"},
    ),
    (
        "binary body is not JSON",
        400,
        binary(binary_headers("item.added", "x", version=2), b'{"n": '),
        {"rule": "json_invalid"},
    ),
    ("an empty structured body", 400, doc(b""), {}),
    ("deeply nested JSON", 400, doc(NESTED), {}),
    # 401: no or bad credentials
    (
        "no Authorization header",
        401,
        binary(binary_headers("item.added", "x", version=2), V2, auth=False),
        {},
    ),
    (
        "a wrong secret",
        401,
        lambda s: {
            "headers": {
                "Authorization": s.acme.auth["Authorization"][:-4] + "AAAA",
                **binary_headers("item.added", "x", version=2),
            },
            "content": V2,
        },
        {},
    ),
    (
        "a key that is not configured",
        401,
        lambda s: {
            "headers": {**s.outsider.auth, **binary_headers("item.added", "x", version=2)},
            "content": V2,
        },
        {},
    ),
    (
        "Basic instead of Bearer",
        401,
        lambda s: {
            "headers": {
                "Authorization": "Basic YWNtZTpzZWNyZXQ=",
                **binary_headers("item.added", "x", version=2),
            },
            "content": V2,
        },
        {},
    ),
    # 403: the key may not publish that
    (
        "a type the key may not publish",
        403,
        doc(structured("item.counted", "c1", {"total": 1})),
        {"attribute": "type"},
    ),
    (
        "a source the key may not use",
        403,
        doc(valid(source="/services/orders")),
        {"attribute": "source"},
    ),
    (
        "one event of a batch not granted",
        403,
        doc([valid(), structured("item.counted", "c2", {"total": 1})], BATCH),
        {"index": "1"},
    ),
    # 413: too large
    (
        "Content-Length over the limit",
        413,
        doc(valid() | {"data": {"n": 1, "label": "x" * MAX_BODY}}),
        {},
    ),
    (
        "more events than a batch may hold",
        413,
        doc([valid() for _ in range(MAX_BATCH + 1)], BATCH),
        {},
    ),
    # 415: wrong content type
    ("text/plain", 415, binary({"Content-Type": "text/plain"}, V2), {}),
    ("no Content-Type", 415, lambda s: {"headers": s.acme.auth, "content": V2}, {}),
    (
        "a charset other than UTF-8",
        415,
        binary(
            binary_headers("item.added", "x", version=2)
            | {"Content-Type": "application/json; charset=iso-8859-1"},
            V2,
        ),
        {},
    ),
    (
        "data_base64",
        415,
        doc({k: v for k, v in valid().items() if k != "data"} | {"data_base64": "eyJuIjoxfQ=="}),
        {"attribute": "data_base64"},
    ),
    (
        "datacontenttype XML",
        415,
        doc(valid(datacontenttype="application/xml")),
        {"attribute": "datacontenttype"},
    ),
    # 422: unknown type or version, invalid payload
    (
        "a type nobody declared",
        422,
        doc(structured("item.missing", "m1", {})),
        {"attribute": "type", "rule": "unknown_type"},
    ),
    (
        "a version nobody declared",
        422,
        doc(structured("item.added", "v3", {"n": 1}, version=3)),
        {"attribute": "dataversion", "rule": "unknown_version"},
    ),
    (
        "a payload of the wrong type",
        422,
        doc(structured("item.added", "p1", {"n": "many", "label": "x"}, version=2)),
        {"path": "n", "rule": "int_parsing"},
    ),
    (
        "a payload missing a required field",
        422,
        doc(structured("item.added", "p2", {"n": 1}, version=2)),
        {"path": "label", "rule": "missing"},
    ),
    (
        "binary payload missing a field",
        422,
        binary(binary_headers("item.added", "p3", version=2), b'{"n": 1}'),
        {"path": "label"},
    ),
    (
        "an event without data",
        422,
        doc({k: v for k, v in valid().items() if k != "data"}),
        {"rule": "missing"},
    ),
    (
        "a batch with one invalid event",
        422,
        doc([valid(), valid(), structured("item.added", "p4", {"n": -1}, version=2)], BATCH),
        {"index": "2", "path": "label"},
    ),
]


@pytest.mark.parametrize(
    ("status", "request_of", "expected"),
    [pytest.param(status, request, expected, id=name) for name, status, request, expected in CASES],
)
async def test_an_error_answer_publishes_nothing(
    setup: Setup, status: int, request_of: Request, expected: dict[str, str]
) -> None:
    before = await setup.offsets()
    async with httpx.AsyncClient(base_url=setup.gateway.url) as client:
        response = await client.post("/events", **request_of(setup))
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == status
    assert problem["type"].startswith("urn:choreokit:problem:")
    assert problem["title"]
    assert problem["detail"]
    assert problem["instance"] == "/events"
    if status == 401:
        assert response.headers["www-authenticate"].startswith("Bearer")
    for name, value in expected.items():
        matching = [e for e in problem["errors"] if str(e.get(name)) == value]
        assert matching, f"no error with {name}={value!r} in {problem['errors']}"
    assert await setup.offsets() == before


async def test_a_chunked_body_over_the_limit_is_refused_while_it_streams(setup: Setup) -> None:
    """No Content-Length: the gateway counts while reading and answers 413 at the limit."""
    before = await setup.offsets()
    chunk = b" " * 8192  # whitespace: the JSON would be valid if it ever ended
    response = await raw_post(
        setup.gateway.url,
        [("Authorization", setup.acme.auth["Authorization"]), *STRUCTURED.items()],
        [chunk] * (4 * MAX_BODY // len(chunk)),
    )
    assert response.status == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"].startswith(f"the body is larger than {MAX_BODY} bytes")
    assert await setup.offsets() == before


async def test_a_chunked_body_within_the_limit_is_accepted(setup: Setup) -> None:
    """The positive control of the test above: chunked bodies are read, and do publish."""
    before = await setup.offsets()
    body = json.dumps(valid()).encode()
    response = await raw_post(
        setup.gateway.url,
        [("Authorization", setup.acme.auth["Authorization"]), *STRUCTURED.items()],
        [body[:10], body[10:]],
    )
    assert response.status == 202, response.body
    assert await setup.offsets() != before


async def test_a_valid_request_does_move_the_offsets(setup: Setup) -> None:
    """The positive control of every case above: the same kind of request, valid, publishes."""
    requests = [
        doc(valid()),
        doc([valid(), valid()], BATCH),
        binary(binary_headers("item.added", unique("b-"), version=2), V2),
    ]
    async with httpx.AsyncClient(base_url=setup.gateway.url) as client:
        for request_of in requests:
            before = await setup.offsets()
            response = await client.post("/events", **request_of(setup))
            assert response.status_code == 202, response.text
            assert await setup.offsets() != before


async def test_unknown_routes_and_methods_answer_problems(setup: Setup) -> None:
    async with httpx.AsyncClient(base_url=setup.gateway.url) as client:
        missing = await client.get("/nothing-here")
        wrong_method = await client.get("/events")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert wrong_method.status_code == 405
    assert wrong_method.json()["type"] == "urn:choreokit:problem:method-not-allowed"
    assert "POST" in wrong_method.headers["allow"]


def granted(event_id: str) -> dict[str, Any]:
    data = {"flow": "flow-1", "step": "payment", "actor": "someone"}
    return structured("approval.granted", event_id, data, correlationid="flow-1")


async def test_a_wildcard_grant_does_not_cover_the_toolkits_report_types(setup: Setup) -> None:
    """A key granted ``*`` could otherwise forge an approval the observer and payments trust."""
    before = await setup.offsets()
    async with httpx.AsyncClient(base_url=setup.gateway.url) as client:
        forged = await client.post(
            "/events", headers={**setup.wildcard.auth, **STRUCTURED}, json=granted(unique("a-"))
        )
        assert forged.status_code == 403, forged.text
        assert forged.headers["content-type"] == "application/problem+json"
        problem = forged.json()
        assert problem["type"] == "urn:choreokit:problem:forbidden"
        (error,) = problem["errors"]
        assert (error["attribute"], error["rule"]) == ("type", "toolkit_type")
        assert "a wildcard grant does not cover" in error["message"]
        assert "'approval.granted'" in error["message"]
        assert await setup.offsets() == before
        # the positive control: a key whose grant names the type publishes it
        named = await client.post(
            "/events", headers={**setup.approver.auth, **STRUCTURED}, json=granted(unique("a-"))
        )
        assert named.status_code == 202, named.text
    after = await setup.offsets()
    assert sum(after[APPROVALS_TOPIC].values()) == sum(before[APPROVALS_TOPIC].values()) + 1
