"""The observer over real HTTP, with docs/security.md's OpenID Connect settings, checking
real RS256 JWTs against a JWKS served over HTTP: viewers read, operators act as their
subject (audited), refused tokens get a problem, and the keys are fetched once."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from choreokit.events import KafkaSettings
from tests import observer_fixtures
from tests.observer_fixtures import running_observer
from tests.oidc_issuer import JWKS_PATH, Issuer, documented_environment, serving_jwks

private_broker = observer_fixtures.private_broker
private_kafka = observer_fixtures.private_kafka

DOCUMENTED_HOST = "https://login.example.com"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_the_observer_takes_jwts_of_the_documented_provider(
    private_kafka: KafkaSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    environment = documented_environment()
    # The documented production setup, with the provider on loopback and the local profile
    # (the private broker is plaintext, which production refuses).
    environment.pop("CHOREO_PROFILE")
    environment.pop("CHOREO_OBSERVER_HOST")
    issuer = Issuer(issuer=environment["CHOREO_OBSERVER_OIDC_ISSUER"])
    with serving_jwks(issuer) as jwks:
        assert environment["CHOREO_OBSERVER_OIDC_JWKS_URL"] == DOCUMENTED_HOST + JWKS_PATH
        environment["CHOREO_OBSERVER_OIDC_JWKS_URL"] = jwks.url
        environment["CHOREO_OBSERVER_AUTH"] = "tokens"  # production's default
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        db = f"sqlite:///{tmp_path / 'observer.sqlite3'}"
        async with running_observer(private_kafka, db, tmp_path) as observer:
            http = observer.client
            viewer = issuer.token(
                sub="vera", roles=None, realm_access={"roles": ["observer-viewer"]}
            )
            operator = issuer.token(
                sub="otto@example.com", roles=None, realm_access={"roles": ["observer-operator"]}
            )

            missing = await http.get("/api/flows")
            assert missing.status_code == 401
            assert missing.headers["content-type"] == "application/problem+json"
            assert (await http.get("/api/flows", headers=bearer(viewer))).status_code == 200
            assert (await http.get("/api/counts", headers=bearer(operator))).status_code == 200

            expired = issuer.token(lifetime=-600, realm_access={"roles": ["observer-operator"]})
            refused = await http.get("/api/flows", headers=bearer(expired))
            assert refused.status_code == 401
            assert "it has expired" in refused.json()["detail"]
            forged = Issuer(kid=issuer.kid, issuer=issuer.issuer).token(
                realm_access={"roles": ["observer-operator"]}
            )
            assert (await http.get("/api/flows", headers=bearer(forged))).status_code == 401
            norole = issuer.token(sub="sam", roles=["observer-viewer"])  # not under realm_access
            assert (await http.get("/api/flows", headers=bearer(norole))).status_code == 403

            replay = "/api/dead-letters/orders.dlq/0/7/replay"
            assert (await http.post(replay, json={}, headers=bearer(viewer))).status_code == 403
            acted = await http.post(replay, json={}, headers=bearer(operator))
            assert acted.status_code == 404, acted.text  # no such dead letter: audited anyway
            audit = await http.get("/api/audit", headers=bearer(operator))
            assert audit.status_code == 200
            [entry] = audit.json()["items"]
            assert (entry["actor"], entry["role"], entry["action"], entry["result"]) == (
                "otto@example.com",
                "operator",
                "dlq.replay",
                "refused",
            )
            assert (await http.get("/api/audit", headers=bearer(viewer))).status_code == 403

    # Every check after the first used the cached keys (the forged token's kid is known).
    assert jwks.fetches == [JWKS_PATH]
    assert httpx.URL(jwks.url).host == "127.0.0.1"
