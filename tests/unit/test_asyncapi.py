"""The AsyncAPI 3.0 document: what it lists, that it is valid AsyncAPI, and its staleness check."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
import yaml

from choreokit.events import HandlerContext, Service
from choreokit.events._asyncapi import (
    ASYNCAPI_FILE,
    asyncapi_document,
    check_asyncapi,
    export_asyncapi,
    render_yaml,
)
from choreokit.events._contract import export_schemas
from tests.support import Catalog, catalog

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "tests/interop/node_modules/@asyncapi/specs/schemas/3.0.0-without-$id.json"


@pytest.fixture
def cat() -> Catalog:
    return catalog("shop")


def services(cat: Catalog) -> list[Service]:
    producer = Service("producer", registry=cat.registry, publishes=[cat.v2, cat.sibling])
    consumer = Service("consumer", registry=cat.registry, publishes=[cat.out])

    @consumer.handler(cat.v2)
    async def count(event: object, ctx: HandlerContext) -> None:
        del event, ctx

    return [consumer, producer]


def spec() -> Any:
    if not SPEC.exists():
        pytest.fail(
            f"{SPEC} is missing: run 'npm ci' in tests/interop (scripts/test does it), "
            "which installs the AsyncAPI specification's JSON Schemas"
        )
    return json.loads(SPEC.read_text())


def test_every_topic_and_its_dead_letters_is_a_channel(cat: Catalog) -> None:
    document = asyncapi_document(cat.registry, services(cat))
    assert document["asyncapi"] == "3.0.0"
    assert set(document["channels"]) == {"shop.in", "shop.in.dlq", "shop.out", "shop.out.dlq"}
    assert document["channels"]["shop.in"]["messages"] == {
        "item.added.v1": {"$ref": "#/components/messages/item.added.v1"},
        "item.added.v2": {"$ref": "#/components/messages/item.added.v2"},
        "item.counted.v1": {"$ref": "#/components/messages/item.counted.v1"},
    }


def test_every_type_and_version_is_a_message_with_its_schema_and_headers(cat: Catalog) -> None:
    message = asyncapi_document(cat.registry)["components"]["messages"]["item.added.v2"]
    assert message["name"] == "item.added"
    assert message["payload"] == {"$ref": "item.added/v2.json"}
    pinned = message["headers"]["allOf"][1]["properties"]
    assert pinned == {"ce_type": {"const": "item.added"}, "ce_dataversion": {"const": "2"}}
    assert message["correlationId"] == {"$ref": "#/components/correlationIds/flow"}
    headers = asyncapi_document(cat.registry)["components"]["schemas"]["CloudEventsKafkaHeaders"]
    assert set(headers["properties"]) == {
        "content-type",
        "ce_specversion",
        "ce_id",
        "ce_source",
        "ce_type",
        "ce_dataversion",
        "ce_time",
        "ce_correlationid",
        "ce_causationid",
        "traceparent",
        "tracestate",
        "ce_joined",
    }


def test_services_send_what_they_publish_and_receive_what_they_handle(cat: Catalog) -> None:
    operations = asyncapi_document(cat.registry, services(cat))["operations"]
    assert set(operations) == {
        "consumer.send.item.seen.v1",
        "consumer.receive.item.added",
        "producer.send.item.added.v2",
        "producer.send.item.counted.v1",
    }
    receive = operations["consumer.receive.item.added"]
    assert receive["action"] == "receive"
    assert receive["channel"] == {"$ref": "#/channels/shop.in"}
    # A v2 handler receives v1 too (upcast).
    assert receive["messages"] == [
        {"$ref": "#/channels/shop.in/messages/item.added.v1"},
        {"$ref": "#/channels/shop.in/messages/item.added.v2"},
    ]
    assert receive["bindings"]["kafka"]["groupId"] == {"type": "string", "enum": ["consumer"]}


def test_the_document_is_valid_asyncapi_3(cat: Catalog) -> None:
    validator = jsonschema_rs.validator_for(spec())
    document = yaml.safe_load(render_yaml(asyncapi_document(cat.registry, services(cat))))
    errors = [f"{list(e.instance_path)}: {e.message}" for e in validator.iter_errors(document)]
    assert errors == []
    document["channels"]["shop.in"]["address"] = 7  # the validator does catch mistakes
    assert list(validator.iter_errors(document))


def test_the_committed_document_is_valid_and_its_payloads_exist() -> None:
    committed = yaml.safe_load((ROOT / "schemas" / ASYNCAPI_FILE).read_text())
    assert list(jsonschema_rs.validator_for(spec()).iter_errors(committed)) == []
    for name, message in committed["components"]["messages"].items():
        ref = message["payload"].get("$ref")
        if ref is not None:
            assert (ROOT / "schemas" / ref).is_file(), f"{name}: {ref} is not in schemas/"


def test_check_says_missing_then_fresh_then_stale(cat: Catalog, tmp_path: Path) -> None:
    [missing] = check_asyncapi(cat.registry, [], tmp_path)
    assert "not exported" in missing.message
    export_schemas(cat.registry, tmp_path)
    assert export_asyncapi(cat.registry, [], tmp_path) is True
    assert export_asyncapi(cat.registry, [], tmp_path) is False
    assert check_asyncapi(cat.registry, [], tmp_path) == []
    [stale] = check_asyncapi(cat.registry, services(cat), tmp_path)  # a service appeared
    assert stale.path == ASYNCAPI_FILE
    assert "stale" in stale.message
    assert "choreo schemas export" in stale.message


def test_rendering_is_stable(cat: Catalog) -> None:
    first = render_yaml(asyncapi_document(cat.registry, services(cat)))
    assert first == render_yaml(asyncapi_document(cat.registry, list(reversed(services(cat)))))
    assert first.startswith("# Generated by 'choreo schemas export'")


def test_choreo_schemas_check_fails_on_a_stale_asyncapi_document(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from choreokit.services.cli import cli

    runner = CliRunner()
    exported = runner.invoke(cli, ["schemas", "export", "--example", "--dir", str(tmp_path)])
    assert exported.exit_code == 0, exported.output
    assert f"wrote {tmp_path / ASYNCAPI_FILE}" in exported.output
    checked = runner.invoke(cli, ["schemas", "check", "--example", "--dir", str(tmp_path)])
    assert checked.exit_code == 0, checked.output
    target = tmp_path / ASYNCAPI_FILE
    target.write_text(target.read_text().replace("title: orders\n", "title: commandes\n"))
    result = runner.invoke(cli, ["schemas", "check", "--example", "--dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "asyncapi.yaml: is stale" in result.output
