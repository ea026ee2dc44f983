"""Bearer JWTs from an OpenID Connect provider, checked against its published keys (JWKS).

A provider (Keycloak, Entra ID, Auth0, Dex, ...) signs access tokens with a
private key and publishes the public keys at a JWKS URL. :class:`JwtVerifier`
fetches those keys (with PyJWT's :class:`jwt.PyJWKClient`: cached, a bounded
fetch timeout, at most one forced refresh per cooldown for an unknown ``kid``)
and accepts a token only if:

* its ``alg`` is one of a fixed set of asymmetric algorithms (never ``none``,
  never an HMAC whose "secret" could be the public key);
* its signature verifies with the provider's key of its ``kid``;
* its ``iss`` is the configured issuer and its ``aud`` names the configured
  audience; ``exp`` and ``sub`` are present; ``exp``, ``nbf`` and ``iat`` hold
  within a small clock-skew leeway;
* a configurable claim (``roles``, ``groups``, ``realm_access.roles``, ...)
  holds a value mapped to a :class:`~choreokit.services.runtime.access.Role`.

The principal it returns is named by the token's subject, so the audit log
records who acted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import jwt
from jwt import PyJWKClient

from choreokit.events import ConfigurationError
from choreokit.services.runtime.access import Principal, Role, TokenRefusedError, is_loopback

logger = logging.getLogger("choreokit.access.oidc")

ALLOWED_ALGORITHMS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)
"""The asymmetric algorithms a token may be signed with; ``none`` and ``HS*`` never are."""

MAX_TOKEN_LENGTH = 16_384
"""Longest bearer JWT looked at (characters); a longer one is refused unread."""

_REQUIRED_CLAIMS = ("exp", "iss", "aud", "sub")


@dataclass(frozen=True, slots=True)
class RoleMapping:
    """Which values of the role claim grant which role.

    Attributes:
        claim: The claim holding the roles; dots walk into objects
            (``realm_access.roles``). A string value is split on whitespace
            (like ``scope``), a list is taken as it is.
        viewer: Values that grant the viewer role.
        operator: Values that grant the operator role.
    """

    claim: str = "roles"
    viewer: tuple[str, ...] = ("viewer",)
    operator: tuple[str, ...] = ("operator",)

    def role_of(self, claims: Mapping[str, Any]) -> Role | None:
        """The highest role the claims grant, ``None`` if they grant none."""
        held = set(_claim_values(claims, self.claim))
        if held & set(self.operator):
            return Role.OPERATOR
        if held & set(self.viewer):
            return Role.VIEWER
        return None


class JwtVerifier:
    """Turns a bearer JWT into a :class:`Principal`, or says why not.

    Args:
        jwks_url: The provider's JWKS URL (``jwks_uri`` of its discovery document).
        issuer: The ``iss`` a token must carry.
        audience: The ``aud`` a token must name (one of them, when it lists several).
        algorithms: The algorithms accepted, a subset of :data:`ALLOWED_ALGORITHMS`.
        leeway: Clock skew allowed on ``exp``, ``nbf`` and ``iat``.
        roles: How the role claim maps to roles.
        fetch_timeout: Longest wait for the JWKS endpoint.
        cache_for: How long fetched keys are used before they are fetched again.
        refresh_cooldown: Least time between forced fetches for an unknown ``kid``
            (so a stream of forged ``kid`` values cannot hammer the provider).
        client: The key source; built from the arguments above when not given.

    Raises:
        ConfigurationError: A URL that is not http(s), an empty issuer or audience,
            or an algorithm outside :data:`ALLOWED_ALGORITHMS`.
    """

    def __init__(
        self,
        *,
        jwks_url: str,
        issuer: str,
        audience: str,
        algorithms: Sequence[str] = ("RS256", "ES256"),
        leeway: timedelta = timedelta(seconds=60),
        roles: RoleMapping | None = None,
        fetch_timeout: timedelta = timedelta(seconds=5),
        cache_for: timedelta = timedelta(minutes=5),
        refresh_cooldown: timedelta = timedelta(seconds=30),
        client: PyJWKClient | None = None,
    ) -> None:
        if urlsplit(jwks_url).scheme not in {"http", "https"}:
            raise ConfigurationError(f"the JWKS URL must be http(s), not {jwks_url!r}")
        if not issuer or not audience:
            raise ConfigurationError(
                "a JWKS URL needs an issuer and an audience to check tokens against"
            )
        unsafe = [a for a in algorithms if a not in ALLOWED_ALGORITHMS]
        if unsafe or not algorithms:
            raise ConfigurationError(
                f"JWT algorithms {unsafe or '(none)'} are not accepted; choose from "
                f"{', '.join(ALLOWED_ALGORITHMS)}"
            )
        self.jwks_url = jwks_url
        self.issuer = issuer
        self.audience = audience
        self.algorithms = tuple(algorithms)
        self.leeway = leeway
        self.roles = roles or RoleMapping()
        self._client = client or PyJWKClient(
            jwks_url,
            cache_keys=False,
            cache_jwk_set=True,
            lifespan=max(1.0, cache_for.total_seconds()),
            timeout=fetch_timeout.total_seconds(),
            cooldown_duration=refresh_cooldown.total_seconds(),
        )

    def accepts(self, token: str) -> bool:
        """Whether ``token`` has a JWT's shape (three dot-separated parts)."""
        return token.count(".") == 2  # noqa: PLR2004 - header.payload.signature

    async def verify(self, token: str) -> Principal:
        """The principal ``token`` stands for.

        Raises:
            TokenRefusedError: 401 for a token that does not verify, 403 for one that
                grants no role, 503 when the provider's keys cannot be fetched.
        """
        if len(token) > MAX_TOKEN_LENGTH:
            raise TokenRefusedError("the bearer token is too long")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise TokenRefusedError("the bearer token is not a valid JWT") from None
        algorithm = header.get("alg")
        if algorithm not in self.algorithms:
            raise TokenRefusedError(
                f"the bearer JWT is signed with {str(algorithm)[:16]!r}; accepted: "
                f"{', '.join(self.algorithms)}"
            )
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise TokenRefusedError("the bearer JWT names no key ('kid')")
        key = await self._signing_key(kid)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key,
                algorithms=list(self.algorithms),
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": list(_REQUIRED_CLAIMS)},
            )
        except jwt.InvalidTokenError as exc:
            raise TokenRefusedError(f"the bearer JWT is not valid here: {_reason(exc)}") from None
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise TokenRefusedError("the bearer JWT has no subject ('sub')")
        role = self.roles.role_of(claims)
        if role is None:
            raise TokenRefusedError(
                f"the token of {subject[:256]} grants no role here: its "
                f"{self.roles.claim!r} claim names none of "
                f"{', '.join((*self.roles.viewer, *self.roles.operator))}",
                status=403,
            )
        return Principal(subject[:256], role)

    async def _signing_key(self, kid: str) -> jwt.PyJWK:
        # PyJWKClient fetches with urllib (blocking): keep it off the event loop.
        try:
            return await asyncio.to_thread(self._client.get_signing_key, kid)
        except jwt.PyJWKClientConnectionError as exc:
            logger.warning("cannot fetch the signing keys from %s: %s", self.jwks_url, exc)
            raise TokenRefusedError(
                "the identity provider's signing keys cannot be fetched; try again later",
                status=503,
            ) from None
        except (jwt.PyJWKClientError, jwt.PyJWKSetError, jwt.PyJWKError):
            raise TokenRefusedError("the bearer JWT is signed with a key not known here") from None


def _reason(exc: jwt.InvalidTokenError) -> str:
    """What was wrong with a token, in words that repeat none of its values."""
    reasons: list[tuple[type[jwt.InvalidTokenError], str]] = [
        (jwt.ExpiredSignatureError, "it has expired"),
        (jwt.ImmatureSignatureError, "it is not valid yet"),
        (jwt.InvalidAudienceError, "it is not meant for this audience"),
        (jwt.InvalidIssuerError, "it comes from another issuer"),
        (jwt.MissingRequiredClaimError, "a required claim is missing (exp, iss, aud, sub)"),
        (jwt.InvalidSignatureError, "its signature does not verify"),
        (jwt.InvalidAlgorithmError, "its algorithm is not accepted"),
        (jwt.InvalidIssuedAtError, "it was issued in the future"),
    ]
    for kind, words in reasons:
        if isinstance(exc, kind):
            return words
    return "it does not decode"


def _claim_values(claims: Mapping[str, Any], path: str) -> list[str]:
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return []
        value = value.get(part)
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def is_loopback_url(url: str) -> bool:
    """Whether ``url`` points at this machine (``localhost``, ``127.0.0.0/8``, ``::1``)."""
    host = urlsplit(url).hostname or ""
    return is_loopback(host)
