"""Hardening: security headers, body limit, CORS, private metrics, no stack traces, audit log."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.api.audit import entries
from tests.unit.api.conftest import Api


def test_security_headers_everywhere(api: Api) -> None:
    """Dashboard, API and error responses carry CSP without inline scripts and the other headers."""
    for path in ("/", "/api/v1/health", "/api/v1/devices", "/nope"):
        headers = api.client.get(path).headers
        assert "script-src 'self'" in headers["content-security-policy"]
        assert "unsafe-inline" not in headers["content-security-policy"]
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["x-frame-options"] == "DENY"
        assert headers["referrer-policy"] == "no-referrer"


def test_no_cors_by_default(api: Api) -> None:
    """Without cors_origins, no Access-Control headers are sent."""
    response = api.client.get("/api/v1/health", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in response.headers


def test_cors_only_for_configured_origins(strict_api: Api) -> None:
    """With cors_origins set, only those origins are allowed."""
    ok = strict_api.client.get("/api/v1/health", headers={"Origin": "https://ops.city.example"})
    assert ok.headers["access-control-allow-origin"] == "https://ops.city.example"
    evil = strict_api.client.get("/api/v1/health", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in evil.headers


def test_body_limit_is_413(strict_api: Api) -> None:
    """A body over max_body_bytes is refused with 413, declared or streamed."""
    big = {"source_yaml": "id: x\n" + "#" * 5000}
    h = strict_api.auth("admin")
    response = strict_api.client.post("/api/v1/rules", json=big, headers=h)
    assert response.status_code == 413
    assert "2048" in response.json()["detail"]

    def chunks() -> Any:
        yield b'{"source_yaml": "'
        for _ in range(10):
            yield b"#" * 500
        yield b'"}'

    streamed = strict_api.client.post(
        "/api/v1/rules", content=chunks(), headers={**h, "Content-Type": "application/json"}
    )
    assert streamed.status_code == 413


def test_metrics_public_by_default_and_admin_only_when_configured(
    api: Api, strict_api: Api
) -> None:
    """/metrics is Prometheus text for anyone by default; admins only when metrics_public=false."""
    public = api.client.get("/metrics")
    assert public.status_code == 200
    assert "# TYPE" in public.text
    assert strict_api.client.get("/metrics").status_code == 401
    assert strict_api.client.get("/metrics", headers=strict_api.auth("operator")).status_code == 403
    assert strict_api.client.get("/metrics", headers=strict_api.auth("admin")).status_code == 200


def test_a_bug_is_a_bare_500_without_stack_trace(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """An exception inside a port becomes a generic 500 JSON body, logged, with no traceback."""

    def broken(*_args: object) -> None:
        raise RuntimeError("secret internals at /srv/hub/registry.py line 42")

    monkeypatch.setattr(api.registry, "get_device", broken)
    response = api.client.get("/api/v1/devices/fg-d03-1", headers=api.auth("viewer"))
    assert response.status_code == 500
    assert response.json() == {"detail": "internal server error"}
    assert "secret" not in response.text
    assert "Traceback" not in response.text
    assert response.headers["x-frame-options"] == "DENY"


def test_audit_records_who_what_when_rows(api: Api) -> None:
    """Reads and changes are audited (key, method, path, query, status, rows); health is not."""
    api.client.get("/api/v1/health")
    api.client.get("/api/v1/devices?district=d07", headers=api.auth("viewer"))
    alert = api.alerts.fire("d03", "flood_gauge", "fg-d03-1")
    api.client.post(f"/api/v1/alerts/{alert.id}/ack", headers=api.auth("operator"))
    api.client.get("/api/v1/devices", headers={"Authorization": "Bearer wrong"})
    api.client.get("/api/v1/rules", headers=api.auth("viewer"))
    logged = entries(api.ctx.conn, limit=10)
    assert [(e.key_name, e.method, e.path, e.status) for e in reversed(logged)] == [
        ("viewer-key", "GET", "/api/v1/devices", 200),
        ("operator-key", "POST", f"/api/v1/alerts/{alert.id}/ack", 200),
        (None, "GET", "/api/v1/devices", 401),
        ("viewer-key", "GET", "/api/v1/rules", 403),
    ]
    devices = logged[-1]
    assert devices.query == "district=d07"
    assert devices.rows == 3
    assert devices.ts_ms == api.clock.now_ms()


def test_audit_endpoint_for_admins(api: Api) -> None:
    """GET /audit lists entries newest first, filtered by key, admins only."""
    api.client.get("/api/v1/devices", headers=api.auth("viewer"))
    api.client.get("/api/v1/alerts", headers=api.auth("operator"))
    viewer_id = api.keys["viewer"].split("_")[1]
    mine = api.client.get(f"/api/v1/audit?key_id={viewer_id}", headers=api.auth("admin")).json()
    assert [(e["path"], e["rows"]) for e in mine] == [("/api/v1/devices", 4)]
    everything = api.client.get("/api/v1/audit?limit=2", headers=api.auth("admin")).json()
    assert [e["path"] for e in everything] == ["/api/v1/audit", "/api/v1/alerts"]
    assert api.client.get("/api/v1/audit?key_id=zz", headers=api.auth("admin")).status_code == 422


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    path=st.sampled_from(
        ["/api/v1/devices", "/api/v1/alerts", "/api/v1/devices/fg-d03-1/telemetry", "/api/v1/audit"]
    ),
    params=st.dictionaries(
        st.sampled_from(
            [
                "district",
                "state",
                "severity",
                "limit",
                "offset",
                "start",
                "end",
                "every",
                "agg",
                "metric",
                "stale",
                "status",
                "key_id",
                "since_ms",
            ]
        ),
        st.text(max_size=30),
        max_size=4,
    ),
)
def test_arbitrary_query_parameters_never_500(api: Api, path: str, params: dict[str, str]) -> None:
    """Whatever the query string, the answer is a success or a 4xx with a JSON detail."""
    response = api.client.get(path, params=params, headers=api.auth("admin"))
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert "detail" in response.json()
