"""Kafka transport security from the environment: one set of options for every client."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import pytest
from faststream.kafka.security import parse_security

from choreokit.events import ConfigurationError, KafkaSettings, UnknownSettingError, client_options
from choreokit.events._kafka import broker_options, producer_options
from choreokit.events._security import FileTokenProvider

PASSWORD = "correct-horse-battery-staple"


def settings(**values: object) -> KafkaSettings:
    return KafkaSettings(**values)  # type: ignore[arg-type]


def test_an_unknown_choreo_kafka_variable_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHOREO_KAFKA_SSL_CA_FILE", "/etc/ca.pem")  # a typo of SSL_CAFILE
    with pytest.raises(
        UnknownSettingError,
        match=r"CHOREO_KAFKA_SSL_CA_FILE \(did you mean CHOREO_KAFKA_SSL_CAFILE\?\)",
    ):
        KafkaSettings()


@pytest.mark.parametrize(
    ("values", "names"),
    [
        ({}, "CHOREO_KAFKA_SECURITY_PROTOCOL=SASL_SSL"),
        (
            {
                "security_protocol": "SASL_PLAINTEXT",
                "sasl_mechanism": "PLAIN",
                "sasl_username": "u",
                "sasl_password": PASSWORD,
            },
            "SASL without TLS.*set CHOREO_KAFKA_SECURITY_PROTOCOL=SASL_SSL",
        ),
        (
            {
                "security_protocol": "SASL_SSL",
                "sasl_mechanism": "SCRAM-SHA-256",
                "sasl_username": "u",
                "sasl_password": PASSWORD,
                "ssl_check_hostname": False,
            },
            "CHOREO_KAFKA_SSL_CHECK_HOSTNAME=false",
        ),
        ({"security_protocol": "SSL"}, "CHOREO_KAFKA_SSL_CERTFILE"),
    ],
)
def test_the_production_profile_refuses_unsafe_transport(
    values: dict[str, object], names: str
) -> None:
    unsafe = settings(profile="production", **values)
    with pytest.raises(ConfigurationError, match=names):
        client_options(unsafe)
    with pytest.raises(ConfigurationError, match=names):
        broker_options(unsafe)


def test_the_local_profile_allows_plaintext() -> None:
    assert "security_protocol" not in client_options(settings())


@pytest.mark.parametrize(
    ("values", "names"),
    [
        ({"security_protocol": "SASL_SSL"}, "CHOREO_KAFKA_SASL_MECHANISM"),
        (
            {"security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN"},
            "CHOREO_KAFKA_SASL_USERNAME and CHOREO_KAFKA_SASL_PASSWORD",
        ),
        ({"sasl_mechanism": "PLAIN"}, "use SASL_SSL"),
        ({"ssl_cafile": "/etc/ca.pem"}, "use SSL or SASL_SSL"),
        (
            {"security_protocol": "SSL", "ssl_certfile": "/etc/client.pem"},
            "both CHOREO_KAFKA_SSL_CERTFILE and CHOREO_KAFKA_SSL_KEYFILE",
        ),
        (
            {"security_protocol": "SASL_SSL", "sasl_mechanism": "OAUTHBEARER"},
            "CHOREO_KAFKA_SASL_OAUTH_TOKEN_FILE",
        ),
    ],
)
def test_settings_that_cannot_work_are_refused(values: dict[str, object], names: str) -> None:
    with pytest.raises(ConfigurationError, match=names):
        client_options(settings(**values))


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A self-signed CA certificate made by openssl."""
    folder = tmp_path_factory.mktemp("tls")
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=choreokit test CA",
            "-keyout", str(folder / "ca.key"), "-out", str(folder / "ca.pem"),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return folder / "ca.pem"


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_ssl_gives_every_client_the_same_verified_connection(ca: Path, mechanism: str) -> None:
    secure = settings(
        profile="production",
        security_protocol="SASL_SSL",
        sasl_mechanism=mechanism,
        sasl_username="orders",
        sasl_password=PASSWORD,
        ssl_cafile=ca,
    )
    raw = client_options(secure)
    assert raw["security_protocol"] == "SASL_SSL"
    assert raw["sasl_mechanism"] == mechanism
    assert raw["sasl_plain_username"] == "orders"
    assert raw["sasl_plain_password"] == PASSWORD
    context = raw["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.check_hostname
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert producer_options(secure, idempotent=True)["security_protocol"] == "SASL_SSL"
    # FastStream's broker gets the same connection through its own security object.
    through_faststream = parse_security(broker_options(secure)["security"])
    for name in ("security_protocol", "sasl_mechanism", "sasl_plain_username"):
        assert through_faststream[name] == raw[name], name
    assert through_faststream["sasl_plain_password"] == PASSWORD
    assert through_faststream["ssl_context"].check_hostname


def test_the_password_never_shows_in_the_settings_repr() -> None:
    secure = settings(
        security_protocol="SASL_SSL",
        sasl_mechanism="PLAIN",
        sasl_username="u",
        sasl_password=PASSWORD,
    )
    assert PASSWORD not in repr(secure)
    assert PASSWORD not in str(secure.model_dump())


def test_a_missing_ca_file_is_a_clear_error(tmp_path: Path) -> None:
    broken = settings(security_protocol="SSL", ssl_cafile=tmp_path / "missing.pem")
    with pytest.raises(ConfigurationError, match="cannot load the Kafka TLS files"):
        client_options(broken)


async def test_oauthbearer_reads_the_current_token_from_its_file(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("first\n")
    secure = settings(
        security_protocol="SASL_SSL", sasl_mechanism="OAUTHBEARER", sasl_oauth_token_file=token_file
    )
    provider = client_options(secure)["sasl_oauth_token_provider"]
    assert isinstance(provider, FileTokenProvider)
    assert await provider.token() == "first"
    token_file.write_text("rotated")
    assert await provider.token() == "rotated"
    assert isinstance(broker_options(secure)["sasl_oauth_token_provider"], FileTokenProvider)
