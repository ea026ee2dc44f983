"""A stand-in OpenID Connect provider for tests: its signing keys, its JWKS, its tokens.

Tokens are signed for real (RSA with PyJWT); :class:`JwksServer` publishes the
public keys over real HTTP, as a provider's ``jwks_uri`` does.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt import PyJWKClient
from jwt.algorithms import RSAAlgorithm

ISSUER = "https://login.example.com/realms/shop"
AUDIENCE = "choreo-observer"
JWKS_PATH = "/realms/shop/protocol/openid-connect/certs"
SECURITY_PAGE = Path(__file__).resolve().parents[1] / "docs" / "security.md"
_DOC_EXAMPLE = re.compile(r"<!-- example: observer-oidc -->\n```bash\n(?P<code>.*?)\n```", re.S)


def documented_environment() -> dict[str, str]:
    """docs/security.md's OpenID Connect example, as environment variables."""
    found = _DOC_EXAMPLE.search(SECURITY_PAGE.read_text())
    assert found is not None, "docs/security.md lost its observer-oidc example"
    pairs = (line.split("=", 1) for line in found["code"].splitlines() if "=" in line)
    return {name.strip(): value.strip() for name, value in pairs}


@dataclass
class Issuer:
    """A provider's signing key and the tokens it signs."""

    kid: str = "key-1"
    issuer: str = ISSUER
    audience: str = AUDIENCE
    key: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )

    def jwks(self) -> dict[str, Any]:
        """The JWK Set a provider publishes: the public key, with its ``kid``."""
        public = json.loads(RSAAlgorithm.to_jwk(self.key.public_key()))
        return {"keys": [public | {"kid": self.kid, "use": "sig", "alg": "RS256"}]}

    def token(
        self, *, lifetime: float = 300, headers: dict[str, Any] | None = None, **claims: Any
    ) -> str:
        """A signed RS256 token; ``claims`` add to or replace the defaults (``None`` drops one)."""
        now = int(time.time())
        body: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": "alice",
            "iat": now,
            "exp": now + int(lifetime),
            "roles": ["viewer"],
        }
        body.update(claims)
        body = {k: v for k, v in body.items() if v is not None}
        return jwt.encode(
            body, self.key, algorithm="RS256", headers={"kid": self.kid, **(headers or {})}
        )


class StaticJwks(PyJWKClient):
    """A key source that answers from memory (unit tests), counting its fetches."""

    def __init__(self, jwks: dict[str, Any]) -> None:
        super().__init__("http://127.0.0.1/unused", cache_jwk_set=True, lifespan=300)
        self.jwks = jwks
        self.fetches = 0

    def fetch_data(self) -> Any:
        self.fetches += 1
        if self.jwk_set_cache is not None:
            self.jwk_set_cache.put(self.jwks)
        return self.jwks


@dataclass
class JwksServer:
    """The provider's JWKS over HTTP on 127.0.0.1, and how often it was asked."""

    url: str
    fetches: list[str]


@contextmanager
def serving_jwks(issuer: Issuer) -> Iterator[JwksServer]:
    """Serve ``issuer``'s JWKS at :data:`JWKS_PATH` on a free loopback port until the block ends."""
    fetches: list[str] = []
    body = json.dumps(issuer.jwks()).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            fetches.append(self.path)
            if self.path != JWKS_PATH:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield JwksServer(f"http://127.0.0.1:{server.server_port}{JWKS_PATH}", fetches)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
