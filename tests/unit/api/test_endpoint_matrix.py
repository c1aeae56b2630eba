"""Every endpoint, table-driven: 403 or nothing outside the key's scope, 404 on unknown ids,
422 on bad parameters or bodies; and a guard that new endpoints join these tables."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.unit.api.conftest import NOW_MS, Api
from tests.unit.api.test_access import ENDPOINTS

#: (method, path) with placeholders {alert} (a d03 alert) and {silence} (a d03 silence).
Call = tuple[str, str, Any]

#: Outside the scope of a d07-scoped admin: refused with 403 (and nothing changes).
OUT_OF_SCOPE: list[Call] = [
    ("GET", "/api/v1/devices/fg-d03-1", None),
    ("GET", "/api/v1/devices/fg-d03-1/telemetry", None),
    ("POST", "/api/v1/devices", {"device_id": "new-1", "district": "d03", "asset_type": "bridge"}),
    ("PUT", "/api/v1/devices/fg-d03-1", {"district": "d07", "asset_type": "flood_gauge"}),
    ("PUT", "/api/v1/devices/new-2", {"district": "d03", "asset_type": "bridge"}),
    ("DELETE", "/api/v1/devices/fg-d03-1", None),
    ("GET", "/api/v1/districts/d03/status", None),
    ("GET", "/api/v1/alerts/{alert}", None),
    ("GET", "/api/v1/alerts/{alert}/cap", None),
    ("POST", "/api/v1/alerts/{alert}/ack", None),
    ("POST", "/api/v1/alerts/{alert}/resolve", None),
    ("POST", "/api/v1/alerts/{alert}/comment", {"comment": "x"}),
    (
        "POST",
        "/api/v1/silences",
        {"matchers": {"district": "d03"}, "duration_s": 60, "comment": "x"},
    ),
    ("POST", "/api/v1/silences/{silence}/expire", None),
    ("POST", "/api/v1/rules", {"source_yaml": "id: mine\n"}),
    ("PUT", "/api/v1/rules/managed-rule", {"source_yaml": "id: managed-rule\n"}),
    ("DELETE", "/api/v1/rules/managed-rule", None),
    ("GET", "/api/v1/audit", None),
    ("GET", "/api/v1/audit/report", None),
    ("GET", "/api/v1/indicators/data_completeness_pct?district=d03", None),
    ("GET", "/api/v1/indicators/data_completeness_pct/devices?district=d03", None),
    ("GET", "/api/v1/keys", None),
    ("GET", "/api/v1/console/devices/fg-d03-1/thresholds", None),
    ("GET", "/api/v1/console/devices/fg-d03-1/live", None),
    ("GET", "/api/v1/reports/1", None),
    ("GET", "/api/v1/reports/1/contact", None),
    ("POST", "/api/v1/reports/1/status", {"status": "closed", "note": "x"}),
    ("POST", "/api/v1/reports/1/merge", {"into": 2}),
]

#: Lists a d07-scoped key may read: 200, with nothing of d03 in them, even when asked.
SCOPED_LISTS: list[str] = [
    "/api/v1/devices",
    "/api/v1/devices?district=d03",
    "/api/v1/districts",
    "/api/v1/alerts",
    "/api/v1/alerts?district=d03",
    "/api/v1/alerts/figures",
    "/api/v1/alerts/figures?district=d03",
    "/api/v1/alerts/cap.atom",
    "/api/v1/silences?include_expired=true",
    "/api/v1/dead-letters",
    "/api/v1/indicators/data_completeness_pct?start=-1d",
    "/api/v1/indicators/data_completeness_pct?start=-1d&by=district_asset_type&format=csv",
    "/api/v1/indicators/data_completeness_pct/devices?start=-1d",
    "/api/v1/console/map",
    "/api/v1/reports",
    "/api/v1/reports?district=d03",
]

#: Unknown ids: 404 for a key that may otherwise do it.
NOT_FOUND: list[Call] = [
    ("GET", "/api/v1/devices/ghost-1", None),
    ("GET", "/api/v1/devices/ghost-1/telemetry", None),
    ("DELETE", "/api/v1/devices/ghost-1", None),
    ("GET", "/api/v1/districts/d99/status", None),
    ("GET", "/api/v1/alerts/ghost", None),
    ("GET", "/api/v1/alerts/ghost/cap", None),
    ("POST", "/api/v1/alerts/ghost/ack", None),
    ("POST", "/api/v1/alerts/ghost/resolve", None),
    ("POST", "/api/v1/alerts/ghost/comment", {"comment": "x"}),
    ("POST", "/api/v1/silences/ghost/expire", None),
    ("GET", "/api/v1/rules/ghost", None),
    ("PUT", "/api/v1/rules/ghost", {"source_yaml": "id: ghost\n"}),
    ("DELETE", "/api/v1/rules/ghost", None),
    ("GET", "/api/v1/indicators/ghost", None),
    ("GET", "/api/v1/indicators/ghost/devices", None),
    ("GET", "/api/v1/console/devices/ghost-1/thresholds", None),
    ("GET", "/api/v1/console/devices/ghost-1/live", None),
    ("GET", "/api/v1/reports/999", None),
    ("GET", "/api/v1/reports/999/contact", None),
    ("POST", "/api/v1/reports/999/status", {"status": "closed"}),
    ("POST", "/api/v1/reports/999/merge", {"into": 1}),
    ("GET", "/open/v1/datasets/manhole-daily.csv", None),  # nothing of manholes is public
    ("GET", "/open/v1/datasets/ghost-daily/datapackage.json", None),
]

#: Bad parameters or bodies: 422 with a detail.
UNPROCESSABLE: list[Call] = [
    ("GET", "/api/v1/devices?limit=0", None),
    ("POST", "/api/v1/devices", {"device_id": "x 1", "district": "d03", "asset_type": "bridge"}),
    ("GET", "/api/v1/devices/bad%20id", None),
    ("PUT", "/api/v1/devices/new-3", {"district": "D 3", "asset_type": "bridge"}),
    ("DELETE", "/api/v1/devices/bad%20id", None),
    ("GET", "/api/v1/devices/fg-d03-1/telemetry?start=yesterday", None),
    ("GET", "/api/v1/districts/D!/status", None),
    ("GET", "/api/v1/alerts?state=open", None),
    ("GET", "/api/v1/alerts/figures?severity=huge", None),
    ("GET", "/api/v1/alerts/bad%20id", None),
    ("GET", "/api/v1/alerts/bad%20id/cap", None),
    ("POST", "/api/v1/alerts/{alert}/ack", {"comment": 5}),
    ("POST", "/api/v1/alerts/{alert}/resolve", {"comment": "x" * 5000}),
    ("POST", "/api/v1/alerts/{alert}/comment", {}),
    ("GET", "/api/v1/silences?include_expired=maybe", None),
    ("POST", "/api/v1/silences", {"matchers": {}, "duration_s": 60, "comment": "x"}),
    ("POST", "/api/v1/silences/bad%20id/expire", None),
    ("GET", "/api/v1/rules/bad%20id", None),
    ("GET", "/api/v1/rules/changes?limit=0", None),
    ("POST", "/api/v1/rules", {"yaml": "x"}),
    ("PUT", "/api/v1/rules/managed-rule", {}),
    ("DELETE", "/api/v1/rules/bad%20id", None),
    ("GET", "/api/v1/dead-letters?reason=Bad Reason", None),
    ("GET", "/api/v1/audit?key_id=zz", None),
    ("GET", "/api/v1/audit/report?period=year", None),
    ("GET", "/api/v1/audit/report?start=0&end=999999999999999", None),
    ("GET", "/api/v1/indicators/data_completeness_pct?start=0&end=999999999999999", None),
    ("GET", "/api/v1/indicators/Bad-Id", None),
    ("GET", "/api/v1/indicators/data_completeness_pct?period=year", None),
    ("GET", "/api/v1/indicators/data_completeness_pct?start=-1d&end=-2d", None),
    ("GET", "/api/v1/indicators/data_completeness_pct/devices?limit=0", None),
    ("GET", "/api/v1/console/devices/bad%20id/thresholds", None),
    ("GET", "/api/v1/console/devices/bad%20id/live", None),
    ("POST", "/api/v1/console/silences/preview", {"matchers": {}}),
    ("GET", "/api/v1/reports?status=done", None),
    ("GET", "/api/v1/reports/hints?device_id=bad%20id", None),
    ("GET", "/api/v1/reports/0", None),
    ("GET", "/api/v1/reports/x/contact", None),
    ("POST", "/api/v1/reports/1/status", {"status": "done"}),
    ("POST", "/api/v1/reports/1/merge", {"into": "2"}),
    ("GET", "/api/v1/keys?state=lost", None),
    ("GET", "/api/v1/open-data/releases?limit=0", None),
    ("GET", "/api/v1/open-data/releases?kind=everything", None),
    ("GET", "/open/v1/catalog.json?format=xml", None),
    ("GET", "/open/v1/datasets/Flood%20Gauge-daily.csv", None),
    ("GET", "/open/v1/datasets/flood_gauge/datapackage.json", None),
]

#: Routes that answer without any key (CONTRACT §6, §9): health and the open data
#: (Open311, public too, has its own tests: tests/unit/reports).
PUBLIC: list[str] = [
    "/api/v1/health",
    "/open/v1/catalog.json",
    "/open/v1/datasets/flood_gauge-daily.csv",
    "/open/v1/datasets/flood_gauge-daily/datapackage.json",
    "/sta/v1.1",
    "/sta/v1.1/Things",
    "/sta/v1.1/Things('fg-d03-1')",
    "/sta/v1.1/Things('fg-d03-1')/Datastreams",
    "/sta/v1.1/Locations",
    "/sta/v1.1/Datastreams",
    "/sta/v1.1/Datastreams('fg-d03-1:water_level_m')/Observations",
    "/sta/v1.1/Observations?$filter=Datastream/@iot.id eq 'fg-d03-1:water_level_m'",
    "/sta/v1.1/Sensors",
    "/sta/v1.1/ObservedProperties",
    "/sta/v1.1/FeaturesOfInterest",
]
#: Templates of the public routes (the SensorThings API is one route for all its paths).
PUBLIC_ROUTES = {
    ("GET", "/api/v1/health"),
    ("GET", "/open/v1/catalog.json"),
    ("GET", "/open/v1/datasets/{dataset_id}.csv"),
    ("GET", "/open/v1/datasets/{dataset_id}/datapackage.json"),
    ("GET", "/sta/v1.1"),
    ("GET", "/sta/v1.1/{path:path}"),
}

#: Endpoints without path, query or body parameters, or tested elsewhere by design.
NO_PARAMETERS = {
    ("GET", "/api/v1/health"),
    ("GET", "/api/v1/whoami"),
    ("GET", "/api/v1/districts"),
    ("GET", "/api/v1/alerts/cap.atom"),
    ("GET", "/api/v1/rules"),
    ("GET", "/api/v1/rules/problems"),
    ("GET", "/api/v1/indicators"),
    ("GET", "/api/v1/stream"),  # 401, scope and events: test_stream.py
    ("GET", "/metrics"),  # test_hardening.py
    ("GET", "/api/v1/console/config"),
    ("GET", "/api/v1/console/map"),
    ("GET", "/api/v1/console/districts.geojson"),  # roles, scope, 404 and 503: test_console.py
    ("GET", "/api/v1/console/devices/{device_id}/live"),  # endless stream: test_console.py
    ("GET", "/api/v1/reports/services"),
    ("GET", "/api/v1/open-data/policy"),
    ("GET", "/open/v1/catalog.json"),
}


def _fill(api: Api, path: str) -> str:
    alert = api.alerts.fire("d03", "flood_gauge", "fg-d03-1")
    silence = api.alerts.create_silence({"district": "d03"}, NOW_MS, NOW_MS + 60_000, "x", "x")
    return path.replace("{alert}", alert.id).replace("{silence}", silence.id)


def _template(path: str) -> str:
    """The OpenAPI path a concrete test path belongs to."""
    bare = path.split("?", maxsplit=1)[0]
    templates = {
        r"/api/v1/devices/[^/]+/telemetry": "/api/v1/devices/{device_id}/telemetry",
        r"/api/v1/devices/[^/]+": "/api/v1/devices/{device_id}",
        r"/api/v1/districts/[^/]+/status": "/api/v1/districts/{district}/status",
        r"/api/v1/alerts/(?!figures$|cap\.atom$)[^/]+/(cap|ack|resolve|comment)": (
            "/api/v1/alerts/{alert_id}/\\1"
        ),
        r"/api/v1/alerts/(?!figures$|cap\.atom$)[^/]+": "/api/v1/alerts/{alert_id}",
        r"/api/v1/silences/[^/]+/expire": "/api/v1/silences/{silence_id}/expire",
        r"/api/v1/rules/(?!changes$|problems$)[^/]+": "/api/v1/rules/{rule_id}",
        r"/api/v1/indicators/[^/]+/devices": "/api/v1/indicators/{indicator_id}/devices",
        r"/api/v1/indicators/[^/]+": "/api/v1/indicators/{indicator_id}",
        r"/api/v1/console/devices/[^/]+/(thresholds|live)": (
            "/api/v1/console/devices/{device_id}/\\1"
        ),
        r"/api/v1/reports/(?!services$|hints$)[^/]+/(contact|status|merge)": (
            "/api/v1/reports/{report_id}/\\1"
        ),
        r"/api/v1/reports/(?!services$|hints$)[^/]+": "/api/v1/reports/{report_id}",
        r"/open/v1/datasets/[^/]+\.csv": "/open/v1/datasets/{dataset_id}.csv",
        r"/open/v1/datasets/[^/]+/datapackage\.json": (
            "/open/v1/datasets/{dataset_id}/datapackage.json"
        ),
    }
    for pattern, template in templates.items():
        match = re.fullmatch(pattern, bare)
        if match:
            return match.expand(template)
    return bare


@pytest.mark.parametrize(("method", "path", "body"), OUT_OF_SCOPE)
def test_outside_scope_is_403_and_changes_nothing(
    api: Api, method: str, path: str, body: Any
) -> None:
    """A d07-scoped admin gets 403 on d03 things (and city-wide writes); d03 state is untouched."""
    path = _fill(api, path)
    devices_before = dict(api.registry.devices)
    alerts_before = {a.id: a.status for a in api.alerts.alerts.values()}
    silences_before = dict(api.alerts.silences)
    rules_before = {r.id: r.source_yaml for r in api.rules.list_rules()}
    response = api.client.request(method, path, json=body, headers=api.auth("d07"))
    assert response.status_code == 403, response.text
    assert "scope" in response.json()["detail"] or "scoped" in response.json()["detail"]
    assert api.registry.devices == devices_before
    assert {a.id: a.status for a in api.alerts.alerts.values()} == alerts_before
    assert api.alerts.silences == silences_before
    assert {r.id: r.source_yaml for r in api.rules.list_rules()} == rules_before


@pytest.mark.parametrize("path", SCOPED_LISTS)
def test_lists_show_nothing_outside_scope(api: Api, path: str) -> None:
    """Lists answer 200 to a d07 key without a trace of d03; the same list unscoped has d03."""
    d03_alert = api.alerts.fire("d03", "flood_gauge", "fg-d03-1")
    api.alerts.create_silence({"district": "d03"}, NOW_MS, NOW_MS + 60_000, "x", "x")
    api.alerts.fire("d07", "manhole", "mh-d07-1")
    api.alerts.create_silence({"district": "d07"}, NOW_MS, NOW_MS + 60_000, "x", "x")
    traces = ("d03", f">{d03_alert.id}<", f'"{d03_alert.id}"')
    scoped = api.client.get(path, headers=api.auth("d07-operator"))
    assert scoped.status_code == 200, scoped.text
    assert not any(t in scoped.text for t in traces), scoped.text
    everything = api.client.get(path, headers=api.auth("operator"))
    if "figures" in path:  # the fake figures are counts only: fewer in scope
        assert scoped.json() != everything.json()
    else:
        assert any(t in everything.text for t in traces), everything.text


def test_asset_type_scope_hides_other_asset_types_in_lists(api: Api) -> None:
    """A key scoped to manholes sees no flood gauge in devices, board, alerts or dead letters."""
    _fill(api, "")
    api.alerts.fire("d07", "manhole", "mh-d07-1")
    h = api.auth("manhole")
    for path in ("/api/v1/devices", "/api/v1/districts", "/api/v1/alerts", "/api/v1/dead-letters"):
        response = api.client.get(path, headers=h)
        assert response.status_code == 200, (path, response.text)
        assert "flood_gauge" not in response.text, path
        assert "fg-d03-1" not in response.text, path
    assert api.client.get("/api/v1/devices/fg-d07-1", headers=h).status_code == 403


@pytest.mark.parametrize(("method", "path", "body"), NOT_FOUND)
def test_unknown_ids_are_404(api: Api, method: str, path: str, body: Any) -> None:
    """Unknown devices, districts, alerts, silences and rules are 404 with a detail."""
    response = api.client.request(method, path, json=body, headers=api.auth("admin"))
    assert response.status_code == 404, response.text
    assert response.json()["detail"]


@pytest.mark.parametrize(("method", "path", "body"), UNPROCESSABLE)
def test_bad_parameters_are_422(api: Api, method: str, path: str, body: Any) -> None:
    """Malformed ids, parameters and bodies are 422 with a detail, never a 500."""
    response = api.client.request(method, _fill(api, path), json=body, headers=api.auth("admin"))
    assert response.status_code == 422, response.text
    assert response.json()["detail"]


def test_every_endpoint_is_in_the_tables(api: Api) -> None:
    """Each endpoint of the schema has a role test; each with an id a 404 test; each taking
    parameters or a body a 422 test (so a new endpoint cannot skip them)."""
    schema = api.client.get("/openapi.json").json()
    routes = {(m.upper(), p): op for p, ops in schema["paths"].items() for m, op in ops.items()}
    with_role = {(m, _template(p)) for m, p, _, _ in ENDPOINTS}
    assert set(routes) - with_role <= NO_PARAMETERS | PUBLIC_ROUTES
    with_404 = {(m, _template(p)) for m, p, _ in NOT_FOUND}
    with_422 = {(m, _template(p)) for m, p, _ in UNPROCESSABLE}
    for (method, path), op in routes.items():
        if "{" in path and (method, path) != ("PUT", "/api/v1/devices/{device_id}"):
            # PUT of an unknown device provisions it: no 404 there by design.
            assert (method, path) in with_404, (method, path)
        takes_input = bool(op.get("parameters")) or "requestBody" in op
        if takes_input and (method, path) not in NO_PARAMETERS:
            assert (method, path) in with_422, (method, path)


@pytest.mark.parametrize("path", PUBLIC)
def test_public_routes_answer_without_a_key(api: Api, path: str) -> None:
    """Health and every open-data route answer 200 without a key, and the same with a bad one
    (a public route never looks at credentials)."""
    anonymous = api.client.get(path)
    assert anonymous.status_code == 200, (path, anonymous.text)
    garbage = api.client.get(path, headers={"Authorization": "Bearer hub_00000000_" + "A" * 43})
    assert garbage.status_code == 200, (path, garbage.text)


def test_every_other_route_needs_a_key(api: Api) -> None:
    """Every route of the app, whether in the schema or not, answers 401 without a key unless
    it is one of the public routes, the console's files or public /metrics."""
    from fastapi.routing import iter_route_contexts

    public = {path for _, path in PUBLIC_ROUTES} | {"/", "/metrics", "/openapi.json"}
    public_prefixes = ("/static", "/open311/")  # Open311 is public too (test_open311 tests)
    samples = {
        "device_id": "fg-d03-1",
        "alert_id": "ghost",
        "silence_id": "ghost",
        "rule_id": "managed-rule",
        "district": "d03",
        "dataset_id": "flood_gauge-daily",
        "path": "Things",
    }
    checked = 0
    for route in iter_route_contexts(api.client.app.router.routes):  # type: ignore[attr-defined]
        if route.path is None or route.path in public or route.path.startswith(public_prefixes):
            continue
        path = route.path
        for name, value in samples.items():
            path = path.replace("{" + name + "}", value)
        for method in sorted((route.methods or set()) - {"HEAD"}):
            response = api.client.request(method, path, json={})
            assert response.status_code == 401, (method, route.path, response.status_code)
            checked += 1
    assert checked >= len(ENDPOINTS)
