"""Operator access for the toolkit's HTTP apps (the saga observer, and any app of yours).

Bearer tokens stored hashed (never the token itself), or JWTs of an OpenID
Connect provider (:class:`~choreokit.services.runtime.oidc.JwtVerifier`), two roles (a *viewer*
reads, an *operator* may also act: replay a dead letter, approve a step), a
``Host`` allowlist against DNS rebinding, security headers (CSP, frames,
referrer), and a limit on failed authentications per client address::

    policy = AccessPolicy(tokens=TokenStore.load(path), read_requires_auth=True)
    install_access(app, policy)

    @app.post("/api/things/{id}/replay")
    async def replay(id: str, who: Principal = Depends(require(Role.OPERATOR))) -> ...:
        ...

Reads under ``/api/`` need a viewer when ``read_requires_auth`` is on; the
pages and static files of a UI do not (they hold no data: the UI asks for a
token and sends it with every API call). Write routes ask for an operator with
:func:`require`, whatever ``read_requires_auth`` says.
"""

from __future__ import annotations

import hashlib
import ipaddress
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from fastapi import FastAPI, HTTPException, Request
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.responses import Response

from choreokit.events import ChoreoError, ConfigurationError

TOKEN_PREFIX = "chk_"  # noqa: S105 - a prefix, not a secret
"""Every minted token starts with this, so a leaked one is easy to search for."""

HASH_PREFIX = "sha256:"

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
"""The ``Host`` names a local server answers by default."""

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
"""Only the app's own scripts, styles and API; no inline script, never framed."""

SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
"""Sent with every response (an existing header of the same name is kept)."""


class Role(StrEnum):
    """What a principal may do; each role may do what the ones before it may."""

    VIEWER = "viewer"
    """Reads flows, events, dead letters and the UI."""

    OPERATOR = "operator"
    """Also acts: replays dead letters, approves or rejects human checkpoints."""

    def allows(self, needed: Role) -> bool:
        """Whether this role covers ``needed``."""
        order = list(Role)
        return order.index(self) >= order.index(needed)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who made a request: the token's name and role."""

    name: str
    role: Role


class TokenRefusedError(ChoreoError):
    """A bearer token was refused by a :class:`TokenVerifier`.

    Attributes:
        status: The HTTP status to answer: 401 (not a valid token), 403 (valid, but
            it grants no role here) or 503 (what it is checked against cannot be
            reached, e.g. an identity provider's keys).
    """

    def __init__(self, message: str, *, status: int = 401) -> None:
        self.status = status
        super().__init__(message)


class TokenVerifier(Protocol):
    """Checks bearer tokens that are not in the :class:`TokenStore` (JWTs, say)."""

    def accepts(self, token: str) -> bool:
        """Whether ``token`` is of the kind this verifier checks."""
        ...

    async def verify(self, token: str) -> Principal:
        """The principal ``token`` stands for.

        Raises:
            TokenRefusedError: The token is refused; its status says how to answer.
        """
        ...


def mint_token() -> str:
    """A new random token (256 bits), to hand to its holder once."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """The form a token is stored in: ``sha256:<hex>``.

    Tokens are random 256-bit strings, so one round of SHA-256 is enough: there
    is nothing to guess that a slow hash would protect.
    """
    return HASH_PREFIX + hashlib.sha256(token.encode()).hexdigest()


class TokenStore:
    """The tokens an app accepts, by hash.

    Args:
        entries: ``(name, role, hash)`` triples, the hash as :func:`hash_token` makes it.
    """

    def __init__(self, entries: Iterable[tuple[str, Role, str]] = ()) -> None:
        self._by_hash: dict[str, Principal] = {}
        for name, role, digest in entries:
            if not digest.startswith(HASH_PREFIX) or len(digest) != len(HASH_PREFIX) + 64:
                raise ConfigurationError(
                    f"token {name!r}: the hash must be 'sha256:' and 64 hex digits, as "
                    "'choreo observer-token create' prints it"
                )
            if digest in self._by_hash:
                raise ConfigurationError(f"token {name!r}: the same hash is listed twice")
            self._by_hash[digest] = Principal(name, role)

    @classmethod
    def load(cls, path: Path) -> TokenStore:
        """Read a YAML file: a list of ``{name, role, hash}`` mappings.

        Raises:
            ConfigurationError: The file is missing or not of that shape.
        """
        import yaml

        try:
            document = yaml.safe_load(path.read_text(encoding="utf-8")) or []
        except OSError as exc:
            raise ConfigurationError(f"cannot read the token file {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigurationError(f"the token file {path} is not valid YAML: {exc}") from None
        if isinstance(document, dict):
            document = document.get("tokens", [])
        if not isinstance(document, list):
            raise ConfigurationError(f"the token file {path} must hold a list of tokens")
        entries: list[tuple[str, Role, str]] = []
        for number, item in enumerate(document, 1):
            if not isinstance(item, dict) or not {"name", "role", "hash"} <= item.keys():
                raise ConfigurationError(f"{path}: token {number} needs 'name', 'role' and 'hash'")
            try:
                role = Role(item["role"])
            except ValueError:
                raise ConfigurationError(
                    f"{path}: token {item['name']!r} has role {item['role']!r}; "
                    f"one of {', '.join(r.value for r in Role)}"
                ) from None
            entries.append((str(item["name"]), role, str(item["hash"])))
        return cls(entries)

    def __len__(self) -> int:
        return len(self._by_hash)

    def verify(self, token: str) -> Principal | None:
        """The principal a presented token belongs to, or ``None``."""
        return self._by_hash.get(hash_token(token))


_MAX_ADDRESSES = 10_000


@dataclass
class FailedAuthLimit:
    """Refuses a client address for a while after too many failed authentications.

    Args:
        failures: How many failures within ``window`` seconds block an address.
        window: Seconds a failure counts for; a blocked address waits until its
            oldest counted failure is that old.
        clock: Seconds, monotonic.
    """

    failures: int = 10
    window: float = 60.0
    clock: Callable[[], float] = time.monotonic
    _seen: dict[str, deque[float]] = field(default_factory=dict)

    def blocked_for(self, address: str) -> float:
        """Seconds until ``address`` may try again (0 if it may now)."""
        recent = self._recent(address)
        if recent is None or len(recent) < self.failures:
            return 0.0
        return max(0.0, recent[0] + self.window - self.clock())

    def failed(self, address: str) -> None:
        """Count one failed authentication from ``address``."""
        recent = self._recent(address)
        if recent is None:
            if len(self._seen) > _MAX_ADDRESSES:  # bounded memory under a spray of addresses
                self._seen.clear()
            recent = self._seen[address] = deque()
        recent.append(self.clock())
        while len(recent) > self.failures:
            recent.popleft()

    def _recent(self, address: str) -> deque[float] | None:
        recent = self._seen.get(address)
        if recent is None:
            return None
        horizon = self.clock() - self.window
        while recent and recent[0] < horizon:
            recent.popleft()
        return recent


@dataclass
class AccessPolicy:
    """Who may read and act on an app.

    Args:
        tokens: The accepted tokens.
        read_requires_auth: Whether reads under ``/api/`` need a viewer token
            (writes always need an operator).
        allowed_hosts: ``Host`` header values answered; ``*`` answers any
            (only behind a proxy that checks it). Default: loopback names.
        open_paths: Paths answered without a token and without the read check
            (health and metrics, for probes and scrapers).
        failed_auth: The limit on failed authentications per client address.
        verifier: Checks the bearer tokens the token store does not hold (an OpenID
            Connect provider's JWTs); ``None`` accepts listed tokens only.
    """

    tokens: TokenStore = field(default_factory=TokenStore)
    read_requires_auth: bool = False
    allowed_hosts: tuple[str, ...] = LOOPBACK_HOSTS
    open_paths: tuple[str, ...] = ("/healthz", "/readyz", "/metrics")
    failed_auth: FailedAuthLimit = field(default_factory=FailedAuthLimit)
    verifier: TokenVerifier | None = None

    async def authenticate(self, request: Request) -> Principal | None:
        """The request's principal, ``None`` without a token.

        Raises:
            HTTPException: 401 for a wrong token, 403 for a valid one that grants no
                role, 429 for an address that failed too often, 503 when the
                verifier cannot check it now.
        """
        address = request.client.host if request.client else "-"
        wait = self.failed_auth.blocked_for(address)
        if wait:
            raise HTTPException(
                429,
                "too many failed authentications from this address; try again later",
                headers={"Retry-After": str(max(1, round(wait)))},
            )
        header = request.headers.get("authorization", "")
        if not header:
            return None
        scheme, _, token = header.partition(" ")
        token = token.strip()
        bearer = scheme.lower() == "bearer"
        principal = self.tokens.verify(token) if bearer else None
        if principal is not None:
            return principal
        message = "the bearer token is not valid here"
        if bearer and self.verifier is not None and self.verifier.accepts(token):
            try:
                return await self.verifier.verify(token)
            except TokenRefusedError as exc:
                if exc.status == 503:  # noqa: PLR2004 - the provider, not the client
                    raise HTTPException(503, str(exc), headers={"Retry-After": "5"}) from None
                if exc.status == 403:  # noqa: PLR2004 - authenticated, not authorized
                    raise HTTPException(
                        403,
                        str(exc),
                        headers={"WWW-Authenticate": 'Bearer error="insufficient_scope"'},
                    ) from None
                message = str(exc)
        self.failed_auth.failed(address)
        raise HTTPException(
            401, message, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}
        )


def require(role: Role) -> Callable[[Request], Awaitable[Principal]]:
    """A FastAPI dependency: the request's principal, which must hold ``role``.

    Answers 401 without a valid token and 403 when the token's role is too low.
    """

    async def dependency(request: Request) -> Principal:
        policy = _policy(request)
        principal = await policy.authenticate(request)
        if principal is None:
            raise HTTPException(
                401,
                f"this needs an {role.value} token: send 'Authorization: Bearer <token>'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not principal.role.allows(role):
            raise HTTPException(
                403,
                f"this needs the {role.value} role; {principal.name} is a {principal.role.value}",
            )
        return principal

    return dependency


def install_access(app: FastAPI, policy: AccessPolicy) -> None:
    """Guard ``app`` by ``policy``: Host allowlist, security headers, and the read check."""
    app.state.access = policy

    @app.middleware("http")
    async def guard(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        if _needs_viewer(policy, request):
            try:
                principal = await policy.authenticate(request)
            except HTTPException as exc:
                return _with_headers(_problem_response(exc))
            if principal is None:
                missing = HTTPException(
                    401,
                    "this needs a viewer token: send 'Authorization: Bearer <token>'",
                    headers={"WWW-Authenticate": "Bearer"},
                )
                return _with_headers(_problem_response(missing))
        return _with_headers(await call_next(request))

    if "*" not in policy.allowed_hosts:
        hosts = [h.strip("[]") if _is_ipv6(h) else h for h in policy.allowed_hosts]
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=[*hosts, *policy.allowed_hosts])


_PUBLIC_API_DOCS = frozenset({"/api/openapi.json", "/api/docs"})


def _needs_viewer(policy: AccessPolicy, request: Request) -> bool:
    path = request.url.path
    return (
        policy.read_requires_auth
        and request.method in {"GET", "HEAD"}
        and path.startswith("/api/")
        and path not in policy.open_paths
        and path not in _PUBLIC_API_DOCS
        and not path.startswith("/api/docs/")
    )


def _with_headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def _policy(request: Request) -> AccessPolicy:
    policy = getattr(request.app.state, "access", None)
    if not isinstance(policy, AccessPolicy):
        raise TypeError("install_access(app, policy) was not called for this app")
    return policy


def _problem_response(exc: HTTPException) -> Response:
    from http import HTTPStatus

    from choreokit.services.runtime.problems import problem

    response = problem(exc.status_code, HTTPStatus(exc.status_code).phrase, str(exc.detail))
    for name, value in (exc.headers or {}).items():
        response.headers[name] = value
    return response


def _is_ipv6(host: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(host.strip("[]")), ipaddress.IPv6Address)
    except ValueError:
        return False


def is_loopback(host: str) -> bool:
    """Whether a listen address is loopback only (``127.0.0.0/8``, ``::1``, ``localhost``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def describe(principal: Principal | None) -> dict[str, Any]:
    """A principal as the audit log and the API show it."""
    if principal is None:
        return {"name": None, "role": None}
    return {"name": principal.name, "role": principal.role.value}
