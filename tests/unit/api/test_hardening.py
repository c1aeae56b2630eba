"""Hardening: security headers, body limit, CORS, private metrics, no stack traces, audit log."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from fastapi.routing import iter_route_contexts
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.api.audit import entries
from hub.api.errors import json_safe
from hub.api.routing import ApiRoute
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


#: Valid-looking bodies that used to end in a 500 (non-finite numbers, unpaired surrogates,
#: half a location): (method, path, raw body, what the detail must mention).
_SILENCE = b'"matchers":{"district":"d03"},"comment":"x"'
_DEVICE = b'"device_id":"x1","district":"d03","asset_type":"bridge"'
EDGE_BODIES: list[tuple[str, str, bytes, str]] = [
    ("POST", "/api/v1/silences", b"{" + _SILENCE + b',"duration_s":NaN}', "JSON"),
    ("POST", "/api/v1/silences", b"{" + _SILENCE + b',"ends_ms":Infinity}', "JSON"),
    ("POST", "/api/v1/silences", b"{" + _SILENCE + b',"duration_s":1e999}', "infinity"),
    ("POST", "/api/v1/silences", b'{"matchers":{"district":"\\ud800"},"comment":"x"}', "surrogate"),
    ("POST", "/api/v1/silences", b'{"matchers":{"d":"x"},"comment":"\\udfff"}', "surrogate"),
    ("POST", "/api/v1/devices", b"{" + _DEVICE + b',"latitude":NaN,"longitude":1}', "JSON"),
    ("POST", "/api/v1/devices", b"{" + _DEVICE + b',"latitude":1e999,"longitude":1}', "infinity"),
    ("POST", "/api/v1/devices", b"{" + _DEVICE + b',"latitude":51.5}', "both or neither"),
    (
        "PUT",
        "/api/v1/devices/x1",
        b'{"district":"d03","asset_type":"bridge","longitude":-0.1}',
        "both",
    ),
    ("POST", "/api/v1/devices", b"{" + _DEVICE + b',"metadata":{"\\ud800":1}}', "surrogate"),
    ("POST", "/api/v1/devices", b"{" + _DEVICE + b',"metadata":{"a":-Infinity}}', "JSON"),
    ("POST", "/api/v1/devices", b'\xff\xfe{"device_id":"x1"}', "UTF-8"),
    ("POST", "/api/v1/alerts/{alert}/comment", b'{"comment":"\\ud800"}', "surrogate"),
    ("POST", "/api/v1/alerts/{alert}/ack", b'{"comment":NaN}', "JSON"),
    ("POST", "/api/v1/rules", b'{"source_yaml":"id: x\\ud800"}', "surrogate"),
    ("PUT", "/api/v1/rules/managed-rule", b'{"source_yaml":"\\ud83d"}', "surrogate"),
]


@pytest.mark.parametrize(("method", "path", "body", "mentions"), EDGE_BODIES)
def test_edge_case_bodies_are_422_with_a_clear_detail(
    api: Api, method: str, path: str, body: bytes, mentions: str
) -> None:
    """NaN, Infinity, 1e999, unpaired surrogates, bad UTF-8 and half a location are a 422
    whose detail names the problem, never a 500; nothing is stored."""
    alert = api.alerts.fire("d03", "flood_gauge", "fg-d03-1")
    devices, silences = dict(api.registry.devices), dict(api.alerts.silences)
    response = api.client.request(
        method,
        path.replace("{alert}", alert.id),
        content=body,
        headers={**api.auth("admin"), "Content-Type": "application/json"},
    )
    assert response.status_code == 422, response.text
    assert mentions.lower() in response.text.lower()
    assert api.registry.devices == devices
    assert api.alerts.silences == silences


@pytest.mark.parametrize(
    "value",
    [float("nan"), float("inf"), "\ud800", b"\xff\xfe", {"\udfff": [float("-inf")]}, "x" * 5000],
)
def test_validation_errors_are_always_encodable(value: object) -> None:
    """Whatever input a validation error echoes, its detail encodes as strict JSON (bounded)."""
    safe = json_safe([{"type": "x", "loc": ["body"], "msg": "m", "input": value}])
    encoded = orjson.dumps(safe)
    assert len(encoded) < 400
    assert orjson.loads(encoded)[0]["msg"] == "m"


def test_no_content_type_with_bad_bytes_is_422(api: Api) -> None:
    """A body without a content type that is not even UTF-8 is a 422 with the bytes escaped."""
    response = api.client.post("/api/v1/devices", content=b"\xff\xfe", headers=api.auth("admin"))
    assert response.status_code == 422
    assert "\\xff" in response.json()["detail"][0]["input"]


def test_every_api_route_reads_json_strictly(api: Api) -> None:
    """Every route of the API is an ApiRoute (strict JSON bodies, unknown query parameters
    refused), so a new route cannot fall back to Python's lenient JSON decoder."""
    schema_paths = api.client.get("/openapi.json").json()["paths"]
    routes = iter_route_contexts(api.client.app.routes)  # type: ignore[attr-defined]
    documented = [r for r in routes if r.path in schema_paths]
    assert len(documented) >= 30
    assert all(isinstance(r.original_route, ApiRoute) for r in documented), [
        r.path for r in documented if not isinstance(r.original_route, ApiRoute)
    ]


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/devices?distrcit=d03",
        "/api/v1/alerts?state=active&sevrity=critical",
        "/metrics?x=1",
    ],
)
def test_unknown_query_parameters_are_422(api: Api, path: str) -> None:
    """A mistyped filter is a 422 naming it, not an unfiltered answer."""
    response = api.client.get(path, headers=api.auth("admin"))
    assert response.status_code == 422, response.text
    detail = response.json()["detail"][0]
    assert detail["loc"][0] == "query"
    assert "unknown query parameter" in detail["msg"]


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/api/v1/devices", {"GET", "POST"}),
        ("/api/v1/devices/fg-d03-1", {"GET", "PUT", "DELETE"}),
        ("/api/v1/rules/managed-rule", {"GET", "PUT", "DELETE"}),
        ("/api/v1/silences", {"GET", "POST"}),
        ("/api/v1/health", {"GET"}),
    ],
)
def test_options_and_405_list_every_method_of_the_path(
    api: Api, path: str, allowed: set[str]
) -> None:
    """OPTIONS answers 204 and a wrong method 405, both with an Allow header listing every
    method the path serves (not only the first route's)."""
    options = api.client.options(path)
    assert options.status_code == 204
    assert set(options.headers["allow"].split(", ")) == allowed | {"OPTIONS"}
    wrong = api.client.patch(path, headers=api.auth("admin"))
    assert wrong.status_code == 405
    assert set(wrong.headers["allow"].split(", ")) == allowed | {"OPTIONS"}
    assert "PATCH" in wrong.json()["detail"]
