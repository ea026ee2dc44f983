"""API keys: minted at random, stored as salted digests, matched in constant time, granted by
pattern; loaded from YAML or JSON; plus the gateway's settings and public face."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

import choreokit.services.gateway
from choreokit.events import ConfigurationError
from choreokit.services.cli import cli
from choreokit.services.gateway import ApiKey, GatewaySettings, KeyStore, entry_document, mint_key


def test_the_public_face_is_deliberate() -> None:
    assert sorted(choreokit.services.gateway.__all__) == [
        "ApiKey",
        "GatewayApp",
        "GatewaySettings",
        "KeyStore",
        "MintedKey",
        "create",
        "entry_document",
        "mint_key",
    ]
    for name in choreokit.services.gateway.__all__:
        assert getattr(choreokit.services.gateway, name).__doc__, name


def test_a_minted_key_authenticates_and_its_entry_holds_no_secret() -> None:
    minted = mint_key("acme", types=("order.placed",))
    assert minted.token.startswith("ck_acme.")
    secret = minted.token.split(".", 1)[1]
    assert len(secret) >= 43  # 32 random bytes, base64url
    assert secret not in json.dumps(entry_document(minted.entry))
    store = KeyStore([minted.entry])
    assert store.authenticate(minted.token) == minted.entry


def test_two_keys_never_share_a_secret_or_a_digest() -> None:
    a, b = mint_key("a", types=("*",)), mint_key("a", types=("*",))
    assert a.token != b.token
    assert a.entry.hash != b.entry.hash
    assert a.entry.hash.split("$")[1] != b.entry.hash.split("$")[1]  # salts


@pytest.mark.parametrize(
    "token",
    [
        "",
        "ck_acme",
        "ck_acme.",
        "ck_other.secret",
        "acme.secret",
        "ck_acme." + "x" * 300,
    ],
)
def test_anything_but_the_token_is_refused(token: str) -> None:
    minted = mint_key("acme", types=("*",))
    store = KeyStore([minted.entry])
    assert store.authenticate(token) is None
    assert store.authenticate(minted.token[:-1] + ("A" if minted.token[-1] != "A" else "B")) is None


def test_grants_are_exact_or_prefix_patterns() -> None:
    entry = mint_key(
        "acme", types=("order.placed", "stock.*"), sources=("/partners/acme", "/partners/acme/*")
    ).entry
    assert entry.may_publish("order.placed")
    assert entry.may_publish("stock.reserved")
    assert not entry.may_publish("order.cancelled")
    assert not entry.may_publish("order.placed.v2")
    assert entry.may_use_source("/partners/acme")
    assert entry.may_use_source("/partners/acme/eu")
    assert not entry.may_use_source("/partners/acmeX")
    assert not entry.may_use_source("/services/orders")
    assert mint_key("any", types=("*",)).entry.may_use_source("/anything")


def test_keys_load_from_yaml_json_and_both(tmp_path: Path) -> None:
    a, b = mint_key("a", types=("x",)), mint_key("b", types=("y",), trusted=True)
    file = tmp_path / "keys.yaml"
    file.write_text(
        "# the gateway's keys\nkeys:\n"
        + "".join(
            f"  - id: {k.id}\n    hash: '{k.hash}'\n    types: [{k.types[0]}]\n" for k in (a.entry,)
        )
    )
    inline = json.dumps([entry_document(b.entry)])
    store = KeyStore.load(file=file, inline=inline)
    assert store.ids() == ("a", "b")
    assert store.authenticate(b.token) == b.entry
    assert store.authenticate(b.token).trusted  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("keys: {}", "expected a list of keys"),
        ("- id: ok\n  hash: nope\n  types: [x]\n", "key #1 is invalid: hash"),
        ("- id: Upper\n  hash: nope\n  types: [x]\n", "key #1 is invalid: id"),
        ("[: not yaml", "not YAML or JSON"),
    ],
)
def test_a_bad_keys_document_is_named(text: str, words: str) -> None:
    with pytest.raises(ConfigurationError, match=words):
        KeyStore.parse(text, origin="keys.yaml")


def test_an_unknown_field_in_an_entry_is_an_error_not_ignored() -> None:
    entry = entry_document(mint_key("a", types=("x",)).entry) | {"tursted": True}
    with pytest.raises(ConfigurationError, match="tursted"):
        KeyStore.parse(json.dumps([entry]), origin="env")


def test_no_keys_at_all_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="has no API keys"):
        KeyStore.load(file=None, inline=None)
    with pytest.raises(ConfigurationError, match="cannot read the keys file"):
        KeyStore.load(file=tmp_path / "absent.yaml", inline=None)
    twice = json.dumps([entry_document(mint_key("a", types=("x",)).entry)] * 2)
    with pytest.raises(ConfigurationError, match="configured twice"):
        KeyStore.load(file=None, inline=twice)


def test_settings_defaults_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HOST", "PORT", "MAX_BODY", "PUBLISH_TIMEOUT", "DEDUP_WINDOW"):
        monkeypatch.delenv(f"CHOREO_GATEWAY_{name}", raising=False)
    defaults = GatewaySettings()
    assert (defaults.host, defaults.port) == ("127.0.0.1", 8081)
    assert defaults.max_body == 1024 * 1024
    assert defaults.publish_timeout == timedelta(seconds=5)
    monkeypatch.setenv("CHOREO_GATEWAY_HOST", "0.0.0.0")
    monkeypatch.setenv("CHOREO_GATEWAY_MAX_BODY", "512KiB")
    monkeypatch.setenv("CHOREO_GATEWAY_PUBLISH_TIMEOUT", "250ms")
    monkeypatch.setenv("CHOREO_GATEWAY_DEDUP_WINDOW", "1h")
    settings = GatewaySettings()
    assert settings.host == "0.0.0.0"
    assert settings.max_body == 512 * 1024
    assert settings.publish_timeout == timedelta(milliseconds=250)
    assert settings.dedup_window == timedelta(hours=1)
    with pytest.raises(Exception, match="frozen"):
        settings.port = 1  # type: ignore[misc]
    monkeypatch.setenv("CHOREO_GATEWAY_KEYS_FILE", "")
    assert GatewaySettings().keys_file is None


def test_gateway_key_create_prints_the_token_once_and_an_entry_that_works() -> None:
    runner = CliRunner()
    result = runner.invoke(
        cli,
        [
            "gateway-key",
            "create",
            "acme",
            "--type",
            "order.placed",
            "--source",
            "/partners/acme/*",
            "--trusted",
            "--rate",
            "5",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    entry = ApiKey.model_validate(out["entry"])
    assert entry.trusted
    assert entry.rate == 5
    assert KeyStore([entry]).authenticate(out["token"]) == entry

    readable = runner.invoke(cli, ["gateway-key", "create", "acme", "--type", "order.placed"])
    assert readable.exit_code == 0
    assert "not shown again" in readable.output
    assert KeyStore.parse(readable.output.split("keys file):\n", 1)[1], origin="cli")

    bad = runner.invoke(cli, ["gateway-key", "create", "Not_Valid", "--type", "x"])
    assert bad.exit_code == 2
    assert "invalid key: id" in bad.output


def test_the_listening_socket_is_tcp_so_answers_are_not_held_by_nagle() -> None:
    """asyncio disables Nagle only on sockets created as IPPROTO_TCP; without it, every
    answer (headers and body written apart) waited ~40 ms for the client's delayed ACK."""
    import socket

    from choreokit.events import KafkaSettings, Registry
    from choreokit.services.gateway import GatewayApp

    app = GatewayApp(
        GatewaySettings(port=0),
        kafka=KafkaSettings(),
        registry=Registry(),
        keys=KeyStore([mint_key("a", types=("*",)).entry]),
    )
    sock = app._bind()
    try:
        assert sock.proto == socket.IPPROTO_TCP
        assert app.url.startswith("http://127.0.0.1:")
    finally:
        sock.close()


async def test_a_gateway_that_owns_its_process_freezes_its_start_up_heap_once_ready() -> None:
    """``choreo run gateway`` (``create`` on a runtime that owns its process) freezes the
    start-up heap before it reports ready, so full garbage collections skip it (they paused
    every request for 40 to 90 ms), and collects its young generation less often; an
    embedded gateway leaves its host's collector alone."""
    import gc

    from choreokit.events import KafkaSettings, Registry
    from choreokit.services.gateway import GatewayApp
    from choreokit.services.gateway.app import create
    from choreokit.services.runtime.app import Runtime
    from choreokit.services.runtime.heap import YOUNG_THRESHOLD

    embedded_runtime = Runtime(name="gateway")
    embedded = GatewayApp(
        GatewaySettings(port=0),
        kafka=KafkaSettings(),
        registry=Registry(),
        keys=KeyStore([mint_key("a", types=("*",)).entry]),
        on_ready=embedded_runtime.mark_ready,
    )
    assert gc.get_freeze_count() == 0
    _, link = embedded.build()
    link.connected.set()
    await embedded._announce(link)
    assert embedded_runtime.up.is_set()
    assert gc.get_freeze_count() == 0
    owned = create(Runtime(name="gateway", owns_process=True))
    threshold = gc.get_threshold()
    try:
        await owned._announce(link)
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold()[0] == YOUNG_THRESHOLD > threshold[0]
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
