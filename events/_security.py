"""Kafka transport security, built once from :class:`KafkaSettings` for every client.

Every Kafka client of the toolkit (the services' consumers and producers, the
observer, the gateway, the CLI's tail and publish, the demo) gets its
connection options from :func:`security_options` (raw aiokafka clients) or
:func:`faststream_security` (FastStream's broker), so TLS and SASL are set in
one place and the same for all of them.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

from aiokafka.abc import AbstractTokenProvider
from aiokafka.helpers import create_ssl_context
from faststream.security import (
    BaseSecurity,
    SASLOAuthBearer,
    SASLPlaintext,
    SASLScram256,
    SASLScram512,
)

from choreokit.events._errors import ConfigurationError
from choreokit.events._settings import KafkaSettings, Profile, SaslMechanism, SecurityProtocol


class FileTokenProvider(AbstractTokenProvider):  # type: ignore[misc]
    """An OAUTHBEARER token read from a file at every (re-)authentication.

    The file is what an identity agent or a projected service-account token
    keeps fresh; the token is never held longer than one handshake needs.
    """

    def __init__(self, path: Path) -> None:
        self._path = path

    async def token(self) -> str:
        """The current token (the file's content, stripped)."""
        try:
            value = self._path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigurationError(
                f"cannot read the OAUTHBEARER token file {self._path}: {exc.strerror}"
            ) from None
        if not value:
            raise ConfigurationError(f"the OAUTHBEARER token file {self._path} is empty")
        return value


def uses_tls(settings: KafkaSettings) -> bool:
    """Whether the connection to the brokers is encrypted."""
    return settings.security_protocol in {SecurityProtocol.SSL, SecurityProtocol.SASL_SSL}


def uses_sasl(settings: KafkaSettings) -> bool:
    """Whether clients authenticate with SASL."""
    return settings.security_protocol in {
        SecurityProtocol.SASL_PLAINTEXT,
        SecurityProtocol.SASL_SSL,
    }


def check_security(settings: KafkaSettings) -> None:
    """Refuse settings that cannot work, and, in production, settings that are not safe.

    Raises:
        ConfigurationError: Naming the setting to change.
    """
    _check_consistent(settings)
    if settings.profile is Profile.PRODUCTION:
        _check_production(settings)


def _check_consistent(settings: KafkaSettings) -> None:
    if uses_sasl(settings):
        if settings.sasl_mechanism is None:
            raise ConfigurationError(
                f"CHOREO_KAFKA_SECURITY_PROTOCOL={settings.security_protocol.value} needs "
                "CHOREO_KAFKA_SASL_MECHANISM (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER)"
            )
        if settings.sasl_mechanism is SaslMechanism.OAUTHBEARER:
            if settings.sasl_oauth_token_file is None:
                raise ConfigurationError(
                    "CHOREO_KAFKA_SASL_MECHANISM=OAUTHBEARER needs "
                    "CHOREO_KAFKA_SASL_OAUTH_TOKEN_FILE (a file holding the current token)"
                )
        elif not settings.sasl_username or settings.sasl_password is None:
            raise ConfigurationError(
                f"CHOREO_KAFKA_SASL_MECHANISM={settings.sasl_mechanism.value} needs "
                "CHOREO_KAFKA_SASL_USERNAME and CHOREO_KAFKA_SASL_PASSWORD"
            )
    elif settings.sasl_mechanism is not None:
        raise ConfigurationError(
            f"CHOREO_KAFKA_SASL_MECHANISM is set but CHOREO_KAFKA_SECURITY_PROTOCOL is "
            f"{settings.security_protocol.value}: use SASL_SSL"
        )
    if not uses_tls(settings) and (settings.ssl_cafile or settings.ssl_certfile):
        raise ConfigurationError(
            "CHOREO_KAFKA_SSL_* files are set but CHOREO_KAFKA_SECURITY_PROTOCOL is "
            f"{settings.security_protocol.value}: use SSL or SASL_SSL, or unset them"
        )
    if bool(settings.ssl_certfile) != bool(settings.ssl_keyfile):
        raise ConfigurationError(
            "a client certificate needs both CHOREO_KAFKA_SSL_CERTFILE and CHOREO_KAFKA_SSL_KEYFILE"
        )


def _check_production(settings: KafkaSettings) -> None:
    if settings.security_protocol is SecurityProtocol.PLAINTEXT:
        raise ConfigurationError(
            "CHOREO_PROFILE=production refuses plaintext Kafka connections: set "
            "CHOREO_KAFKA_SECURITY_PROTOCOL=SASL_SSL (or SSL with client certificates) and "
            "CHOREO_KAFKA_SSL_CAFILE"
        )
    if settings.security_protocol is SecurityProtocol.SASL_PLAINTEXT:
        raise ConfigurationError(
            "CHOREO_PROFILE=production refuses SASL without TLS (credentials in the clear): "
            "set CHOREO_KAFKA_SECURITY_PROTOCOL=SASL_SSL"
        )
    if not settings.ssl_check_hostname:
        raise ConfigurationError(
            "CHOREO_PROFILE=production refuses CHOREO_KAFKA_SSL_CHECK_HOSTNAME=false: a "
            "certificate for any name would be accepted; fix the brokers' certificates instead"
        )
    if settings.security_protocol is SecurityProtocol.SSL and not settings.ssl_certfile:
        raise ConfigurationError(
            "CHOREO_PROFILE=production with CHOREO_KAFKA_SECURITY_PROTOCOL=SSL needs a client "
            "certificate (CHOREO_KAFKA_SSL_CERTFILE, _KEYFILE) to authenticate; or use SASL_SSL"
        )


def ssl_context(settings: KafkaSettings) -> ssl.SSLContext | None:
    """The TLS context of every client: server verified (CA, hostname), optional client cert."""
    if not uses_tls(settings):
        return None
    try:
        context: ssl.SSLContext = create_ssl_context(
            cafile=str(settings.ssl_cafile) if settings.ssl_cafile else None,
            certfile=str(settings.ssl_certfile) if settings.ssl_certfile else None,
            keyfile=str(settings.ssl_keyfile) if settings.ssl_keyfile else None,
            password=(
                settings.ssl_key_password.get_secret_value() if settings.ssl_key_password else None
            ),
        )
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(
            f"cannot load the Kafka TLS files (CHOREO_KAFKA_SSL_CAFILE, _CERTFILE, _KEYFILE): {exc}"
        ) from None
    context.check_hostname = settings.ssl_check_hostname
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def security_options(settings: KafkaSettings) -> dict[str, Any]:
    """Aiokafka keyword arguments for the connection's TLS and SASL (empty for plaintext)."""
    check_security(settings)
    if settings.security_protocol is SecurityProtocol.PLAINTEXT:
        return {}
    options: dict[str, Any] = {
        "security_protocol": settings.security_protocol.value,
        "ssl_context": ssl_context(settings),
    }
    if settings.sasl_mechanism is not None:
        options["sasl_mechanism"] = settings.sasl_mechanism.value
        if settings.sasl_mechanism is SaslMechanism.OAUTHBEARER:
            assert settings.sasl_oauth_token_file is not None
            options["sasl_oauth_token_provider"] = FileTokenProvider(settings.sasl_oauth_token_file)
        else:
            assert settings.sasl_password is not None
            options["sasl_plain_username"] = settings.sasl_username
            options["sasl_plain_password"] = settings.sasl_password.get_secret_value()
    return options


def faststream_security(settings: KafkaSettings) -> dict[str, Any]:
    """FastStream ``KafkaBroker`` arguments giving the same connection as :func:`security_options`.

    ``security`` is FastStream's object for the protocol and mechanism (it turns
    it into the same aiokafka arguments); the OAUTHBEARER token provider is a
    broker argument of its own.
    """
    check_security(settings)
    if settings.security_protocol is SecurityProtocol.PLAINTEXT:
        return {}
    context = ssl_context(settings)
    tls = uses_tls(settings)
    mechanism = settings.sasl_mechanism
    if mechanism is None:
        return {"security": BaseSecurity(ssl_context=context, use_ssl=tls)}
    if mechanism is SaslMechanism.OAUTHBEARER:
        assert settings.sasl_oauth_token_file is not None
        return {
            "security": SASLOAuthBearer(ssl_context=context, use_ssl=tls),
            "sasl_oauth_token_provider": FileTokenProvider(settings.sasl_oauth_token_file),
        }
    assert settings.sasl_username is not None
    assert settings.sasl_password is not None
    kind = {
        SaslMechanism.PLAIN: SASLPlaintext,
        SaslMechanism.SCRAM_SHA_256: SASLScram256,
        SaslMechanism.SCRAM_SHA_512: SASLScram512,
    }[mechanism]
    return {
        "security": kind(
            settings.sasl_username,
            settings.sasl_password.get_secret_value(),
            ssl_context=context,
            use_ssl=tls,
        )
    }
