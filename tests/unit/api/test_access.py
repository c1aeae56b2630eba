"""Authentication, roles and failed-login rate limiting across every endpoint."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from hub.api.audit import entries
from hub.api.auth import MAX_FAILURES, FailedAuthLimiter, client_address
from hub.api.keys import ROLES, revoke_key
from hub.settings import ApiSettings, Settings
from tests.unit.api.conftest import NOW_MS, Api, make_api

# (method, path, least role, JSON body) for every authenticated endpoint.
ENDPOINTS: list[tuple[str, str, str, Any]] = [
    ("GET", "/api/v1/whoami", "viewer", None),
    ("GET", "/api/v1/devices", "viewer", None),
    ("GET", "/api/v1/devices/fg-d03-1", "viewer", None),
    ("GET", "/api/v1/devices/fg-d03-1/telemetry", "viewer", None),
    (
        "POST",
        "/api/v1/devices",
        "admin",
        {"device_id": "new-1", "district": "d03", "asset_type": "bridge"},
    ),
    ("PUT", "/api/v1/devices/new-2", "admin", {"district": "d03", "asset_type": "bridge"}),
    ("DELETE", "/api/v1/devices/aq-d07-1", "admin", None),
    ("GET", "/api/v1/districts", "viewer", None),
    ("GET", "/api/v1/districts/d03/status", "viewer", None),
    ("GET", "/api/v1/alerts", "viewer", None),
    ("GET", "/api/v1/alerts/figures", "viewer", None),
    ("GET", "/api/v1/alerts/cap.atom", "viewer", None),
    ("GET", "/api/v1/alerts/{alert}", "viewer", None),
    ("GET", "/api/v1/alerts/{alert}/cap", "viewer", None),
    ("POST", "/api/v1/alerts/{alert}/ack", "operator", {"comment": "on it"}),
    ("POST", "/api/v1/alerts/{alert}/resolve", "operator", None),
    ("POST", "/api/v1/alerts/{alert}/comment", "operator", {"comment": "crew sent"}),
    ("GET", "/api/v1/silences", "viewer", None),
    (
        "POST",
        "/api/v1/silences",
        "operator",
        {"matchers": {"district": "d03"}, "duration_s": 600, "comment": "works"},
    ),
    ("POST", "/api/v1/silences/{silence}/expire", "operator", None),
    ("GET", "/api/v1/rules", "rule_author", None),
    ("GET", "/api/v1/rules/changes", "rule_author", None),
    ("GET", "/api/v1/rules/problems", "rule_author", None),
    ("GET", "/api/v1/rules/managed-rule", "rule_author", None),
    ("POST", "/api/v1/rules", "rule_author", {"source_yaml": "id: new-rule\n"}),
    ("PUT", "/api/v1/rules/managed-rule", "rule_author", {"source_yaml": "id: managed-rule\n"}),
    ("DELETE", "/api/v1/rules/managed-rule", "rule_author", None),
    ("GET", "/api/v1/dead-letters", "operator", None),
    ("GET", "/api/v1/audit", "admin", None),
    ("GET", "/api/v1/keys", "admin", None),
    ("GET", "/api/v1/open-data/policy", "viewer", None),
    ("GET", "/api/v1/open-data/releases", "operator", None),
    ("GET", "/api/v1/audit/report", "admin", None),
    ("GET", "/api/v1/indicators", "viewer", None),
    ("GET", "/api/v1/indicators/data_completeness_pct", "viewer", None),
    ("GET", "/api/v1/indicators/data_completeness_pct/devices", "viewer", None),
    ("GET", "/api/v1/console/config", "viewer", None),
    ("GET", "/api/v1/console/map", "viewer", None),
    ("GET", "/api/v1/console/devices/fg-d03-1/thresholds", "viewer", None),
    ("POST", "/api/v1/console/silences/preview", "operator", {"matchers": {"district": "d03"}}),
    ("GET", "/api/v1/reports", "viewer", None),
    ("GET", "/api/v1/reports/services", "viewer", None),
    ("GET", "/api/v1/reports/hints", "viewer", None),
    ("GET", "/api/v1/reports/1", "viewer", None),
    ("GET", "/api/v1/reports/1/contact", "operator", None),
    ("POST", "/api/v1/reports/1/status", "operator", {"status": "in_progress", "note": "crew"}),
    ("POST", "/api/v1/reports/1/merge", "operator", {"into": 2}),
]


def _call(api: Api, method: str, path: str, body: Any, headers: dict[str, str]) -> Any:
    alert = api.alerts.fire("d03", "flood_gauge", "fg-d03-1")
    silence = api.alerts.create_silence({"district": "d03"}, NOW_MS, NOW_MS + 60_000, "x", "x")
    path = path.replace("{alert}", alert.id).replace("{silence}", silence.id)
    return api.client.request(method, path, json=body, headers=headers)


@pytest.mark.parametrize(("method", "path", "role", "body"), ENDPOINTS)
def test_no_key_is_401_with_bearer_challenge(
    api: Api, method: str, path: str, role: str, body: Any
) -> None:
    """Every endpoint but health answers 401 with WWW-Authenticate: Bearer without a key."""
    response = _call(api, method, path, body, {})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert "detail" in response.json()


@pytest.mark.parametrize(("method", "path", "role", "body"), ENDPOINTS)
def test_roles_below_are_403_and_the_role_is_admitted(
    api: Api, method: str, path: str, role: str, body: Any
) -> None:
    """Keys below an endpoint's role get 403; its role gets a non-error answer."""
    least = ROLES.index(role)
    for lower in ROLES[:least]:
        response = _call(api, method, path, body, api.auth(lower))
        assert response.status_code == 403, (lower, response.text)
        assert role in response.json()["detail"]
    response = _call(api, method, path, body, api.auth(role))
    assert response.status_code < 300, response.text


def test_health_needs_no_key_and_reports_unready_as_503(api: Api) -> None:
    """GET /health is public; it answers 503 while the hub is not ready."""
    assert api.client.get("/api/v1/health").json()["ready"] is True
    api.health.ready = False
    response = api.client.get("/api/v1/health")
    assert response.status_code == 503
    assert response.json()["ok"] is False


@pytest.mark.parametrize(
    "header",
    [
        "Bearer nonsense",
        "Bearer hub_00000000_" + "A" * 43,
        "Basic dXNlcjpwYXNz",
        "Bearer ",
    ],
)
def test_invalid_keys_are_401(api: Api, header: str) -> None:
    """Malformed, unknown and non-bearer credentials are refused with 401."""
    response = api.client.get("/api/v1/devices", headers={"Authorization": header})
    assert response.status_code == 401


def test_wrong_secret_for_a_real_id_is_401(api: Api) -> None:
    """A key with a known id but another secret is refused."""
    forged = _forged(api.keys["admin"])
    response = api.client.get("/api/v1/devices", headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401


def test_revoked_key_is_401(api: Api) -> None:
    """A revoked key stops working at once."""
    assert api.client.get("/api/v1/devices", headers=api.auth("viewer")).status_code == 200
    revoke_key(api.ctx.conn, "viewer-key")
    assert api.client.get("/api/v1/devices", headers=api.auth("viewer")).status_code == 401


def _forged(key: str) -> str:
    """``key`` with its id kept and another secret."""
    return key[:13] + ("B" if key[13] != "B" else "C") + key[14:]


def test_a_guessed_key_id_is_locked_but_other_keys_keep_working(api: Api) -> None:
    """After MAX_FAILURES wrong secrets for one key id, that id gets 429 (even with its right
    secret) until the window passes; other keys from the same address keep working."""
    forged = {"Authorization": f"Bearer {_forged(api.keys['admin'])}"}
    for _ in range(MAX_FAILURES):
        assert api.client.get("/api/v1/devices", headers=forged).status_code == 401
    locked = api.client.get("/api/v1/devices", headers=api.auth("admin"))
    assert locked.status_code == 429
    assert int(locked.headers["retry-after"]) >= 1
    assert api.keys["admin"].split("_")[1] in locked.json()["detail"]
    assert api.client.get("/api/v1/devices", headers=api.auth("viewer")).status_code == 200
    api.clock.advance(61)
    assert api.client.get("/api/v1/devices", headers=api.auth("admin")).status_code == 200


def test_a_failing_address_gets_429_but_valid_keys_from_it_work(api: Api) -> None:
    """An address past MAX_FAILURES failures gets 429 with Retry-After for further failures,
    while a valid key from the same address (a shared NAT) is still admitted."""
    for n in range(MAX_FAILURES):
        unknown = {"Authorization": f"Bearer hub_{n:08x}_" + "x" * 43}
        assert api.client.get("/api/v1/devices", headers=unknown).status_code == 401
    guess = api.client.get("/api/v1/devices", headers={"Authorization": "Bearer nonsense"})
    assert guess.status_code == 429
    assert int(guess.headers["retry-after"]) >= 1
    assert api.client.get("/api/v1/devices", headers=api.auth("operator")).status_code == 200


@pytest.fixture
def proxied_api(tmp_path: Path) -> Iterator[Api]:
    """The API behind a reverse proxy at 10.0.0.1, which it trusts."""
    settings = Settings(data_dir=tmp_path, api=ApiSettings(trusted_proxies=["10.0.0.1"]))
    for api in make_api(tmp_path, settings):
        api.client = TestClient(api.client.app, client=("10.0.0.1", 40000))
        yield api


def test_behind_a_trusted_proxy_failures_count_per_forwarded_client(proxied_api: Api) -> None:
    """Behind a trusted proxy one guesser's failures lock out only its own forwarded address,
    and the audit log records that address."""
    api = proxied_api
    bad = {"Authorization": "Bearer nonsense"}
    guesser = {**bad, "X-Forwarded-For": "203.0.113.9"}
    for _ in range(MAX_FAILURES):
        assert api.client.get("/api/v1/devices", headers=guesser).status_code == 401
    assert api.client.get("/api/v1/devices", headers=guesser).status_code == 429
    colleague = {**bad, "X-Forwarded-For": "198.51.100.7, 10.0.0.1"}
    assert api.client.get("/api/v1/devices", headers=colleague).status_code == 401
    assert {e.client for e in entries(api.ctx.conn, limit=20)} == {"203.0.113.9", "198.51.100.7"}


@pytest.mark.parametrize(
    ("peer", "forwarded", "trusted", "client"),
    [
        ("192.0.2.5", "203.0.113.9", [], "192.0.2.5"),  # no trusted proxies: header ignored
        ("192.0.2.5", "203.0.113.9", ["10.0.0.0/8"], "192.0.2.5"),  # peer not trusted
        ("10.0.0.1", "203.0.113.9", ["10.0.0.0/8"], "203.0.113.9"),
        ("10.0.0.1", "1.1.1.1, 203.0.113.9, 10.0.0.2", ["10.0.0.0/8"], "203.0.113.9"),
        ("10.0.0.1", "203.0.113.9, garbage", ["10.0.0.0/8"], "10.0.0.1"),
        ("10.0.0.1", None, ["10.0.0.0/8"], "10.0.0.1"),
        ("10.0.0.1", "10.0.0.3", ["10.0.0.0/8"], "10.0.0.3"),  # every hop trusted: the first
        ("::1", "2001:db8::7", ["::1"], "2001:db8::7"),
    ],
)
def test_client_address_reads_forwarded_for_only_from_trusted_proxies(
    peer: str, forwarded: str | None, trusted: list[str], client: str
) -> None:
    """X-Forwarded-For names the client only when the peer is a trusted proxy, read from the
    right past trusted hops; a client cannot choose its address by writing the header."""
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded else []
    scope = {"client": (peer, 1234), "headers": headers}
    networks = ApiSettings(trusted_proxies=trusted).trusted_proxies
    assert client_address(scope, networks) == client


def test_limiter_forgets_old_failures_and_bounds_clients() -> None:
    """Failures leave the window as time passes; the oldest clients are forgotten past the cap."""
    limiter = FailedAuthLimiter(max_failures=2, window_s=10, max_clients=3)
    limiter.failed("a", 0)
    limiter.failed("a", 1)
    assert limiter.retry_after("a", 2) == 8
    assert limiter.retry_after("a", 10.5) is None
    for client in "bcde":
        limiter.failed(client, 20)
        limiter.failed(client, 20)
    assert limiter.retry_after("b", 21) is None  # forgotten: only 3 clients tracked
    assert limiter.retry_after("e", 21) == 9


def test_whoami_reports_role_and_scope(api: Api) -> None:
    """/whoami names the key, its role and its scope."""
    body = api.client.get("/api/v1/whoami", headers=api.auth("d07")).json()
    assert body["role"] == "admin"
    assert body["name"] == "d07-admin"
    assert body["scopes"] == {"districts": ["d07"]}


def test_trusted_proxies_setting_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """HUB_API__TRUSTED_PROXIES takes comma-separated addresses and networks; anything else
    is refused at start-up, naming the setting."""
    monkeypatch.setenv("HUB_API__TRUSTED_PROXIES", "127.0.0.1, 10.0.0.0/8,::1")
    assert [str(n) for n in Settings().api.trusted_proxies] == [
        "127.0.0.1/32",
        "10.0.0.0/8",
        "::1/128",
    ]
    monkeypatch.setenv("HUB_API__TRUSTED_PROXIES", "proxy.example")
    with pytest.raises(ValidationError, match="trusted_proxies"):
        Settings()
