"""Operator access: tokens by hash, roles, the read check, Hosts, headers, failed logins."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated

import httpx
import pytest
from fastapi import Depends, FastAPI

from choreokit.events import ConfigurationError, Profile
from choreokit.services.runtime.access import (
    CONTENT_SECURITY_POLICY,
    AccessPolicy,
    FailedAuthLimit,
    Principal,
    Role,
    TokenStore,
    hash_token,
    install_access,
    mint_token,
    require,
)
from choreokit.services.saga_observer.access import DEV_TOKEN_FILE, access_policy
from choreokit.services.saga_observer.settings import ObserverAuth, ObserverSettings

VIEWER = mint_token()
OPERATOR = mint_token()
TOKENS = TokenStore(
    [("vera", Role.VIEWER, hash_token(VIEWER)), ("otto", Role.OPERATOR, hash_token(OPERATOR))]
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def app_for(policy: AccessPolicy) -> FastAPI:
    app = FastAPI()
    install_access(app, policy)
    actions: list[str] = []
    app.state.actions = actions

    @app.get("/api/things")
    async def things() -> list[str]:
        return actions

    @app.post("/api/things")
    async def act(who: Annotated[Principal, Depends(require(Role.OPERATOR))]) -> dict[str, str]:
        actions.append(who.name)
        return {"by": who.name}

    @app.get("/healthz")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/")
    async def page() -> dict[str, str]:
        return {"page": "ui"}

    return app


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def client(clock: Clock) -> AsyncIterator[httpx.AsyncClient]:
    policy = AccessPolicy(
        tokens=TOKENS,
        read_requires_auth=True,
        failed_auth=FailedAuthLimit(failures=3, window=60, clock=clock),
    )
    transport = httpx.ASGITransport(app=app_for(policy))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8080") as http:
        yield http


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_reads_need_a_viewer_token_when_the_policy_says_so(client: httpx.AsyncClient) -> None:
    refused = await client.get("/api/things")
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith("Bearer")
    assert refused.headers["content-type"] == "application/problem+json"
    assert (await client.get("/api/things", headers=bearer(VIEWER))).status_code == 200
    assert (await client.get("/healthz")).status_code == 200  # probes need no token
    assert (await client.get("/")).status_code == 200  # the UI page holds no data


async def test_writes_need_an_operator_and_change_nothing_otherwise(
    client: httpx.AsyncClient,
) -> None:
    assert (await client.post("/api/things")).status_code == 401
    assert (await client.post("/api/things", headers=bearer(VIEWER))).status_code == 403
    listed = await client.get("/api/things", headers=bearer(VIEWER))
    assert listed.json() == []
    done = await client.post("/api/things", headers=bearer(OPERATOR))
    assert done.status_code == 200
    assert done.json() == {"by": "otto"}
    assert (await client.get("/api/things", headers=bearer(VIEWER))).json() == ["otto"]


async def test_writes_need_an_operator_even_when_reads_are_open() -> None:
    transport = httpx.ASGITransport(app=app_for(AccessPolicy(tokens=TOKENS)))
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as http:
        assert (await http.get("/api/things")).status_code == 200
        assert (await http.post("/api/things")).status_code == 401


async def test_a_wrong_token_is_401_and_too_many_block_the_address(
    client: httpx.AsyncClient, clock: Clock
) -> None:
    for _ in range(3):
        assert (await client.get("/api/things", headers=bearer("chk_guess"))).status_code == 401
    blocked = await client.get("/api/things", headers=bearer(VIEWER))
    assert blocked.status_code == 429
    assert int(blocked.headers["retry-after"]) >= 1
    assert (await client.post("/api/things", headers=bearer(OPERATOR))).status_code == 429
    clock.now += 61
    assert (await client.get("/api/things", headers=bearer(VIEWER))).status_code == 200


async def test_a_foreign_host_is_refused() -> None:
    transport = httpx.ASGITransport(app=app_for(AccessPolicy(tokens=TOKENS)))
    async with httpx.AsyncClient(transport=transport, base_url="http://attacker.example") as http:
        refused = await http.get("/api/things")
        assert refused.status_code == 400
        assert (await http.get("/healthz")).status_code == 400
    async with httpx.AsyncClient(transport=transport, base_url="http://[::1]:8080") as http:
        assert (await http.get("/api/things")).status_code == 200


async def test_every_answer_carries_the_security_headers(client: httpx.AsyncClient) -> None:
    for path in ("/", "/api/things", "/healthz"):
        response = await client.get(path)
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
    assert "'unsafe-inline'" not in CONTENT_SECURITY_POLICY
    assert "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY


def test_tokens_are_kept_by_hash_only(tmp_path: Path) -> None:
    token = mint_token()
    path = tmp_path / "tokens.yaml"
    path.write_text(f"- name: alice\n  role: operator\n  hash: {hash_token(token)}\n")
    store = TokenStore.load(path)
    assert store.verify(token) == Principal("alice", Role.OPERATOR)
    assert store.verify(token + "x") is None
    assert token not in path.read_text()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("- name: a\n  role: admin\n  hash: sha256:" + "0" * 64, "role 'admin'"),
        ("- name: a\n  role: viewer\n", "needs 'name', 'role' and 'hash'"),
        ("- name: a\n  role: viewer\n  hash: plain-token", "must be 'sha256:'"),
        ("{not: [valid", "not valid YAML"),
    ],
)
def test_a_broken_token_file_is_a_clear_error(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "tokens.yaml"
    path.write_text(content)
    with pytest.raises(ConfigurationError, match=message):
        TokenStore.load(path)


def test_the_production_profile_needs_tokens(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="CHOREO_OBSERVER_TOKENS_FILE"):
        access_policy(ObserverSettings(), profile=Profile.PRODUCTION, data_dir=tmp_path)


def test_the_production_profile_refuses_open_reads_beyond_loopback(tmp_path: Path) -> None:
    settings = ObserverSettings(host="0.0.0.0", auth=ObserverAuth.OFF)
    with pytest.raises(
        ConfigurationError,
        match=r"without authentication on 0\.0\.0\.0: .*set CHOREO_OBSERVER_AUTH=tokens .*"
        r"or CHOREO_OBSERVER_HOST=127\.0\.0\.1",
    ):
        access_policy(settings, profile=Profile.PRODUCTION, data_dir=tmp_path)


def test_the_production_profile_reads_with_tokens_by_default(tmp_path: Path) -> None:
    path = tmp_path / "tokens.yaml"
    path.write_text(f"- name: a\n  role: viewer\n  hash: {hash_token(VIEWER)}\n")
    policy = access_policy(
        ObserverSettings(tokens_file=path, host="0.0.0.0", allowed_hosts=("observer.internal",)),
        profile=Profile.PRODUCTION,
        data_dir=tmp_path,
    )
    assert policy.read_requires_auth
    assert "observer.internal" in policy.allowed_hosts
    assert "0.0.0.0" not in policy.allowed_hosts


def test_the_local_profile_mints_one_development_operator_token(tmp_path: Path) -> None:
    first = access_policy(ObserverSettings(), profile=Profile.LOCAL, data_dir=tmp_path)
    token = (tmp_path / DEV_TOKEN_FILE).read_text().strip()
    assert (tmp_path / DEV_TOKEN_FILE).stat().st_mode & 0o077 == 0
    assert not first.read_requires_auth
    assert first.tokens.verify(token) == Principal("developer", Role.OPERATOR)
    again = access_policy(ObserverSettings(), profile=Profile.LOCAL, data_dir=tmp_path)
    assert again.tokens.verify(token) is not None
