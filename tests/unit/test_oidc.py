"""Bearer JWTs of an OpenID Connect provider: what is accepted, what is refused and how."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from fastapi import Depends, FastAPI

from choreokit.events import ConfigurationError, Profile
from choreokit.services.runtime.access import (
    AccessPolicy,
    Principal,
    Role,
    TokenStore,
    hash_token,
    install_access,
    mint_token,
    require,
)
from choreokit.services.runtime.oidc import JwtVerifier, RoleMapping
from choreokit.services.runtime.problems import PROBLEM_JSON
from choreokit.services.saga_observer import problems
from choreokit.services.saga_observer.access import access_policy
from choreokit.services.saga_observer.settings import ObserverSettings
from tests.oidc_issuer import AUDIENCE, ISSUER, Issuer, StaticJwks, documented_environment

LISTED = mint_token()
ISSUER_KEY = Issuer()


def verifier(jwks: StaticJwks | None = None, **overrides: Any) -> JwtVerifier:
    options: dict[str, Any] = {
        "jwks_url": "https://login.example.com/certs",
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "client": jwks or StaticJwks(ISSUER_KEY.jwks()),
    }
    options.update(overrides)
    return JwtVerifier(**options)


def app_for(policy: AccessPolicy) -> FastAPI:
    app = FastAPI()
    problems.install(app)  # the observer's error answers
    install_access(app, policy)

    @app.get("/api/things")
    async def things() -> list[str]:
        return []

    @app.post("/api/things")
    async def act(who: Annotated[Principal, Depends(require(Role.OPERATOR))]) -> dict[str, str]:
        return {"by": who.name}

    return app


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    policy = AccessPolicy(
        tokens=TokenStore([("ci", Role.VIEWER, hash_token(LISTED))]),
        read_requires_auth=True,
        verifier=verifier(),
    )
    transport = httpx.ASGITransport(app=app_for(policy))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        yield http


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_valid_jwt_reads_and_an_operator_jwt_acts_as_its_subject(
    client: httpx.AsyncClient,
) -> None:
    assert (await client.get("/api/things", headers=bearer(ISSUER_KEY.token()))).status_code == 200
    acted = await client.post(
        "/api/things", headers=bearer(ISSUER_KEY.token(sub="ops-7", roles=["operator"]))
    )
    assert acted.status_code == 200
    assert acted.json() == {"by": "ops-7"}
    # Hashed tokens keep working next to JWTs.
    assert (await client.get("/api/things", headers=bearer(LISTED))).status_code == 200


def other_key_token() -> str:
    return Issuer(kid=ISSUER_KEY.kid).token()  # same kid, another private key


def none_token() -> str:
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "eve", "exp": time.time() + 300}
    return jwt.encode(claims, key="", algorithm="none", headers={"kid": ISSUER_KEY.kid})


def hs_with_public_key_token() -> str:
    """The classic confusion: HS256 'signed' with the provider's public key as the secret."""
    public = ISSUER_KEY.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = jwt.utils.base64url_encode(b'{"alg":"HS256","typ":"JWT","kid":"key-1"}')
    claims = jwt.utils.base64url_encode(
        f'{{"iss":"{ISSUER}","aud":"{AUDIENCE}","sub":"eve","exp":{int(time.time()) + 300},'
        '"roles":["operator"]}'.encode()
    )
    signature = hmac.new(public, header + b"." + claims, hashlib.sha256).digest()
    return b".".join([header, claims, jwt.utils.base64url_encode(signature)]).decode()


@pytest.mark.parametrize(
    ("token", "words"),
    [
        (lambda: ISSUER_KEY.token(lifetime=-120), "it has expired"),
        (lambda: ISSUER_KEY.token(aud="another-app"), "not meant for this audience"),
        (lambda: ISSUER_KEY.token(iss="https://evil.example.com"), "comes from another issuer"),
        (other_key_token, "signature does not verify"),
        (lambda: ISSUER_KEY.token(headers={"kid": "key-unknown"}), "a key not known here"),
        (none_token, "signed with 'none'"),
        (hs_with_public_key_token, "signed with 'HS256'"),
        (lambda: ISSUER_KEY.token(sub=None), "a required claim is missing"),
        (lambda: ISSUER_KEY.token(exp=None), "a required claim is missing"),
        (lambda: "chk_no.such.token", "not a valid JWT"),
    ],
    ids=[
        "expired",
        "wrong-audience",
        "wrong-issuer",
        "wrong-key",
        "unknown-kid",
        "alg-none",
        "hs256-public-key",
        "no-subject",
        "no-expiry",
        "garbage",
    ],
)
async def test_a_refused_jwt_is_401_with_a_problem_body_saying_why(
    client: httpx.AsyncClient, token: object, words: str
) -> None:
    for method in ("GET", "POST"):
        refused = await client.request(method, "/api/things", headers=bearer(token()))  # type: ignore[operator]
        assert refused.status_code == 401, refused.text
        assert refused.headers["content-type"] == PROBLEM_JSON
        assert words in refused.json()["detail"]
        assert refused.headers["www-authenticate"] == 'Bearer error="invalid_token"'


async def test_a_valid_jwt_without_a_role_is_403_and_a_viewer_cannot_act(
    client: httpx.AsyncClient,
) -> None:
    nobody = await client.get("/api/things", headers=bearer(ISSUER_KEY.token(roles=["sales"])))
    assert nobody.status_code == 403
    assert nobody.headers["content-type"] == PROBLEM_JSON
    assert "grants no role here" in nobody.json()["detail"]
    viewer = await client.post("/api/things", headers=bearer(ISSUER_KEY.token()))
    assert viewer.status_code == 403
    assert "needs the operator role; alice is a viewer" in viewer.json()["detail"]


async def test_clock_skew_within_the_leeway_is_accepted() -> None:
    check = verifier(leeway=timedelta(seconds=60))
    late = ISSUER_KEY.token(lifetime=-30)
    assert await check.verify(late) == Principal("alice", Role.VIEWER)
    strict = verifier(leeway=timedelta(0))
    with pytest.raises(Exception, match="expired"):
        await strict.verify(late)


async def test_keys_are_fetched_once_and_reused() -> None:
    jwks = StaticJwks(ISSUER_KEY.jwks())
    check = verifier(jwks)
    for _ in range(5):
        await check.verify(ISSUER_KEY.token())
    assert jwks.fetches == 1


async def test_an_unreachable_provider_is_503_not_a_bad_token() -> None:
    check = JwtVerifier(
        jwks_url="http://127.0.0.1:9/certs",  # discard: nothing listens
        issuer=ISSUER,
        audience=AUDIENCE,
        fetch_timeout=timedelta(seconds=2),
    )
    transport = httpx.ASGITransport(
        app=app_for(AccessPolicy(read_requires_auth=True, verifier=check))
    )
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        answer = await http.get("/api/things", headers=bearer(ISSUER_KEY.token()))
    assert answer.status_code == 503
    assert "cannot be fetched" in answer.json()["detail"]


@pytest.mark.parametrize(
    ("claims", "role"),
    [
        ({"realm_access": {"roles": ["observer-operator"]}}, Role.OPERATOR),
        ({"realm_access": {"roles": ["observer-viewer", "x"]}}, Role.VIEWER),
        ({"realm_access": "observer-viewer"}, None),
        ({"realm_access": {"roles": "observer-viewer observer-operator"}}, Role.OPERATOR),
        ({}, None),
    ],
)
def test_roles_come_from_a_configurable_claim(claims: dict[str, object], role: Role | None) -> None:
    mapping = RoleMapping(
        claim="realm_access.roles", viewer=("observer-viewer",), operator=("observer-operator",)
    )
    assert mapping.role_of(claims) == role


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"algorithms": ("HS256",)}, "not accepted"),
        ({"algorithms": ("none",)}, "not accepted"),
        ({"algorithms": ()}, "not accepted"),
        ({"issuer": ""}, "needs an issuer and an audience"),
        ({"jwks_url": "file:///etc/keys.json"}, "must be http"),
    ],
)
def test_unsafe_verifier_settings_are_refused(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        verifier(**overrides)


OIDC = {
    "oidc_jwks_url": "https://login.example.com/certs",
    "oidc_issuer": ISSUER,
    "oidc_audience": AUDIENCE,
}


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"oidc_jwks_url": "https://login.example.com/certs"}, "needs CHOREO_OBSERVER_OIDC_ISSUER"),
        ({"oidc_issuer": ISSUER, "oidc_audience": AUDIENCE}, "OIDC_JWKS_URL is not"),
        (OIDC | {"oidc_jwks_url": "http://login.example.com/certs"}, "must be https://"),
        (OIDC | {"oidc_algorithms": ("HS256",)}, "not accepted"),
        (
            OIDC | {"oidc_viewer_roles": ("staff",), "oidc_operator_roles": ("staff",)},
            "share a value",
        ),
    ],
)
def test_the_production_profile_refuses_unsafe_oidc_settings(
    tmp_path: Path, settings: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        access_policy(
            ObserverSettings(**settings),  # type: ignore[arg-type]
            profile=Profile.PRODUCTION,
            data_dir=tmp_path,
        )


def test_a_misspelt_oidc_variable_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHOREO_OBSERVER_OIDC_ROLES_CLAIM", "groups")
    with pytest.raises(ValueError, match=r"unknown variable.*OIDC_ROLES_CLAIM.*OIDC_ROLE_CLAIM"):
        ObserverSettings()


def test_settings_bound_the_leeway_and_the_fetch_timeout() -> None:
    with pytest.raises(ValueError, match="between 0 and 5 minutes"):
        ObserverSettings(oidc_leeway=timedelta(hours=1))
    with pytest.raises(ValueError, match="at most 30 seconds"):
        ObserverSettings(oidc_fetch_timeout=timedelta(minutes=5))


def test_the_documented_production_setup_builds_and_needs_no_token_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    environment = documented_environment()
    assert environment.pop("CHOREO_PROFILE") == "production"
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    policy = access_policy(ObserverSettings(), profile=Profile.PRODUCTION, data_dir=tmp_path)
    assert policy.read_requires_auth
    assert isinstance(policy.verifier, JwtVerifier)
    assert policy.verifier.roles.role_of({"realm_access": {"roles": ["observer-operator"]}}) is (
        Role.OPERATOR
    )
    assert len(policy.tokens) == 0
