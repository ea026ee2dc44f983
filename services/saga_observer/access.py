"""Who may read the observer and act through it, from its settings and the profile."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from choreokit.events import ConfigurationError, Profile
from choreokit.services.runtime.access import (
    LOOPBACK_HOSTS,
    AccessPolicy,
    Role,
    TokenStore,
    hash_token,
    is_loopback,
    mint_token,
)
from choreokit.services.runtime.oidc import JwtVerifier, RoleMapping, is_loopback_url
from choreokit.services.saga_observer.settings import ObserverAuth, ObserverSettings

logger = logging.getLogger("choreokit.observer")

DEV_TOKEN_FILE = "observer-operator-token"  # noqa: S105 - a file name
"""Where, under the data directory, the local profile's operator token goes."""

_WILDCARD_HOSTS = {"0.0.0.0", "::", "[::]", ""}  # noqa: S104 - names, not a bind


def access_policy(settings: ObserverSettings, *, profile: Profile, data_dir: Path) -> AccessPolicy:
    """The observer's access policy.

    Raises:
        ConfigurationError: OpenID Connect settings that do not go together. With
            ``CHOREO_PROFILE=production``: neither a token file nor OpenID Connect,
            reads left open on an address beyond loopback, or a JWKS URL on plain
            HTTP beyond loopback.
    """
    production = profile is Profile.PRODUCTION
    verifier = _jwt_verifier(settings, production=production)
    auth = settings.auth or (ObserverAuth.TOKENS if production else ObserverAuth.OFF)
    if production and auth is ObserverAuth.OFF and not is_loopback(settings.host):
        raise ConfigurationError(
            f"the observer would serve stored events without authentication on {settings.host}: "
            "with CHOREO_PROFILE=production set CHOREO_OBSERVER_AUTH=tokens (and "
            "CHOREO_OBSERVER_TOKENS_FILE), or CHOREO_OBSERVER_HOST=127.0.0.1"
        )
    if settings.tokens_file is not None:
        tokens = TokenStore.load(settings.tokens_file)
    elif verifier is not None and production:
        tokens = TokenStore()
    elif production:
        raise ConfigurationError(
            "with CHOREO_PROFILE=production the observer needs CHOREO_OBSERVER_TOKENS_FILE "
            "(a YAML list of {name, role, hash}; 'choreo observer-token create NAME --role "
            "operator' prints an entry) or an OpenID Connect provider "
            "(CHOREO_OBSERVER_OIDC_JWKS_URL, _ISSUER and _AUDIENCE)"
        )
    else:
        tokens = _development_tokens(data_dir)
    if auth is ObserverAuth.TOKENS and not len(tokens) and verifier is None:
        raise ConfigurationError(
            f"CHOREO_OBSERVER_AUTH=tokens, but {settings.tokens_file} lists no token"
        )
    hosts = list(LOOPBACK_HOSTS)
    if settings.host not in _WILDCARD_HOSTS:
        hosts.append(settings.host)
    hosts.extend(settings.allowed_hosts)
    return AccessPolicy(
        tokens=tokens,
        read_requires_auth=auth is ObserverAuth.TOKENS,
        allowed_hosts=tuple(dict.fromkeys(hosts)),
        verifier=verifier,
    )


def _jwt_verifier(settings: ObserverSettings, *, production: bool) -> JwtVerifier | None:
    """The OpenID Connect provider's JWT check, if one is configured."""
    url = settings.oidc_jwks_url
    if url is None:
        if settings.oidc_issuer or settings.oidc_audience:
            raise ConfigurationError(
                "CHOREO_OBSERVER_OIDC_ISSUER/_AUDIENCE are set but CHOREO_OBSERVER_OIDC_JWKS_URL "
                "is not: set the provider's JWKS URL (its discovery document's jwks_uri)"
            )
        return None
    if not settings.oidc_issuer or not settings.oidc_audience:
        raise ConfigurationError(
            "CHOREO_OBSERVER_OIDC_JWKS_URL needs CHOREO_OBSERVER_OIDC_ISSUER and "
            "CHOREO_OBSERVER_OIDC_AUDIENCE: a token of any issuer or audience would pass"
        )
    if production and not url.startswith("https://") and not is_loopback_url(url):
        raise ConfigurationError(
            f"with CHOREO_PROFILE=production the JWKS URL must be https:// (not {url}): keys "
            "fetched over plain HTTP can be swapped on the way, and with them any token forged"
        )
    if production and set(settings.oidc_viewer_roles) & set(settings.oidc_operator_roles):
        raise ConfigurationError(
            "CHOREO_OBSERVER_OIDC_VIEWER_ROLES and _OPERATOR_ROLES share a value: every "
            "viewer would be an operator"
        )
    return JwtVerifier(
        jwks_url=url,
        issuer=settings.oidc_issuer,
        audience=settings.oidc_audience,
        algorithms=settings.oidc_algorithms,
        leeway=settings.oidc_leeway,
        roles=RoleMapping(
            claim=settings.oidc_role_claim,
            viewer=settings.oidc_viewer_roles,
            operator=settings.oidc_operator_roles,
        ),
        fetch_timeout=settings.oidc_fetch_timeout,
        cache_for=settings.oidc_cache,
    )


def _development_tokens(data_dir: Path) -> TokenStore:
    """The local profile's operator token: minted once per data directory, kept in a file."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / DEV_TOKEN_FILE
    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        token = mint_token()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(token + "\n")
        logger.info("observer: a development operator token is in %s", path)
    return TokenStore([("developer", Role.OPERATOR, hash_token(token))])
