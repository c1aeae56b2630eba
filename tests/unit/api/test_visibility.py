"""One policy for restricted metric values, by role, on every route that can carry them.

A manhole's ``h2s_ppm`` is restricted (the shipped catalog): viewers may not read it.
Its value is seeded everywhere a value can travel (latest values, stored telemetry, an
alert's summary, explanation and timeline, the live stream), and every route of the
app is called as a viewer: the value never appears, and where it was withheld the
answer says so. The routes are enumerated from the app, so a new route must be added
to CALLS, and so to this check, before this test passes.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from hub.api.auth import Principal
from hub.api.keys import ApiKey, verify_key
from hub.api.routes.console import live_readings
from hub.api.visibility import Visibility
from hub.catalog import load_catalog
from hub.clock import FakeClock
from hub.messages import (
    AlertEvent,
    AlertStatus,
    Explanation,
    Reading,
    RuleEvent,
    RuleState,
    Severity,
)
from hub.ports import UNRESTRICTED, AlertFilter
from tests.unit.alerts.conftest import BASIC_ROUTES, Harness
from tests.unit.api.conftest import NOW_MS, Api

#: An h2s_ppm reading: distinctive enough never to appear by chance.
SECRET = "47.25"
SUMMARY = f"h2s_ppm on mh-d07-1 is {SECRET}: > 10 for 2m."
EXPLANATION = {
    "summary": SUMMARY,
    "threshold": 10.0,
    "observed": {"h2s_ppm": float(SECRET)},
    "readings": [[NOW_MS, float(SECRET)]],
    "rule_version": "v1",
    "ts_ms": NOW_MS,
}

#: Every operation of the app -> the concrete request made of it ({alert}, {silence} filled).
CALLS: dict[tuple[str, str], tuple[str, Any]] = {
    ("GET", "/api/v1/health"): ("/api/v1/health", None),
    ("GET", "/api/v1/whoami"): ("/api/v1/whoami", None),
    ("GET", "/api/v1/devices"): ("/api/v1/devices", None),
    ("POST", "/api/v1/devices"): (
        "/api/v1/devices",
        {"device_id": "mh-d07-2", "district": "d07", "asset_type": "manhole"},
    ),
    ("GET", "/api/v1/devices/{device_id}"): ("/api/v1/devices/mh-d07-1", None),
    ("PUT", "/api/v1/devices/{device_id}"): (
        "/api/v1/devices/mh-d07-1",
        {"district": "d07", "asset_type": "manhole"},
    ),
    ("DELETE", "/api/v1/devices/{device_id}"): ("/api/v1/devices/mh-d07-1", None),
    ("GET", "/api/v1/devices/{device_id}/telemetry"): ("/api/v1/devices/mh-d07-1/telemetry", None),
    ("GET", "/api/v1/districts"): ("/api/v1/districts", None),
    ("GET", "/api/v1/districts/{district}/status"): ("/api/v1/districts/d07/status", None),
    ("GET", "/api/v1/alerts"): ("/api/v1/alerts", None),
    ("GET", "/api/v1/alerts/figures"): ("/api/v1/alerts/figures", None),
    ("GET", "/api/v1/alerts/cap.atom"): ("/api/v1/alerts/cap.atom", None),
    ("GET", "/api/v1/alerts/{alert_id}"): ("/api/v1/alerts/{alert}", None),
    ("GET", "/api/v1/alerts/{alert_id}/cap"): ("/api/v1/alerts/{alert}/cap", None),
    ("POST", "/api/v1/alerts/{alert_id}/ack"): ("/api/v1/alerts/{alert}/ack", None),
    ("POST", "/api/v1/alerts/{alert_id}/resolve"): ("/api/v1/alerts/{alert}/resolve", None),
    ("POST", "/api/v1/alerts/{alert_id}/comment"): (
        "/api/v1/alerts/{alert}/comment",
        {"comment": "crew sent"},
    ),
    ("GET", "/api/v1/silences"): ("/api/v1/silences", None),
    ("POST", "/api/v1/silences"): (
        "/api/v1/silences",
        {"matchers": {"district": "d07"}, "duration_s": 60, "comment": "works"},
    ),
    ("POST", "/api/v1/silences/{silence_id}/expire"): ("/api/v1/silences/{silence}/expire", None),
    ("GET", "/api/v1/rules"): ("/api/v1/rules", None),
    ("POST", "/api/v1/rules"): ("/api/v1/rules", {"source_yaml": "id: new-rule\n"}),
    ("GET", "/api/v1/rules/changes"): ("/api/v1/rules/changes", None),
    ("GET", "/api/v1/rules/problems"): ("/api/v1/rules/problems", None),
    ("GET", "/api/v1/rules/{rule_id}"): ("/api/v1/rules/managed-rule", None),
    ("PUT", "/api/v1/rules/{rule_id}"): (
        "/api/v1/rules/managed-rule",
        {"source_yaml": "id: managed-rule\n"},
    ),
    ("DELETE", "/api/v1/rules/{rule_id}"): ("/api/v1/rules/managed-rule", None),
    ("GET", "/api/v1/dead-letters"): ("/api/v1/dead-letters", None),
    ("GET", "/api/v1/stream"): ("/api/v1/stream", None),
    ("GET", "/api/v1/audit"): ("/api/v1/audit", None),
    ("GET", "/api/v1/audit/report"): ("/api/v1/audit/report", None),
    ("GET", "/api/v1/indicators"): ("/api/v1/indicators", None),
    ("GET", "/api/v1/indicators/{indicator_id}"): (
        "/api/v1/indicators/data_completeness_pct?district=d07",
        None,
    ),
    ("GET", "/api/v1/indicators/{indicator_id}/devices"): (
        "/api/v1/indicators/data_completeness_pct/devices?district=d07",
        None,
    ),
    ("GET", "/api/v1/keys"): ("/api/v1/keys", None),
    ("GET", "/api/v1/open-data/policy"): ("/api/v1/open-data/policy", None),
    ("GET", "/api/v1/open-data/releases"): ("/api/v1/open-data/releases", None),
    ("GET", "/open/v1/catalog.json"): ("/open/v1/catalog.json", None),
    ("GET", "/open/v1/datasets/{dataset_id}.csv"): (
        "/open/v1/datasets/flood_gauge-daily.csv",
        None,
    ),
    ("GET", "/open/v1/datasets/{dataset_id}/datapackage.json"): (
        "/open/v1/datasets/flood_gauge-daily/datapackage.json",
        None,
    ),
    ("GET", "/metrics"): ("/metrics", None),
    ("GET", "/api/v1/console/config"): ("/api/v1/console/config", None),
    ("GET", "/api/v1/console/map"): ("/api/v1/console/map", None),
    ("GET", "/api/v1/console/districts.geojson"): ("/api/v1/console/districts.geojson", None),
    ("GET", "/api/v1/console/devices/{device_id}/thresholds"): (
        "/api/v1/console/devices/mh-d07-1/thresholds",
        None,
    ),
    ("GET", "/api/v1/console/devices/{device_id}/live"): (
        "/api/v1/console/devices/mh-d07-1/live",
        None,
    ),
    ("POST", "/api/v1/console/silences/preview"): (
        "/api/v1/console/silences/preview",
        {"matchers": {"district": "d07"}},
    ),
    ("GET", "/api/v1/reports"): ("/api/v1/reports", None),
    ("GET", "/api/v1/reports/services"): ("/api/v1/reports/services", None),
    ("GET", "/api/v1/reports/hints"): ("/api/v1/reports/hints", None),
    ("GET", "/api/v1/reports/{report_id}"): ("/api/v1/reports/1", None),
    ("GET", "/api/v1/reports/{report_id}/contact"): ("/api/v1/reports/1/contact", None),
    ("POST", "/api/v1/reports/{report_id}/status"): (
        "/api/v1/reports/1/status",
        {"status": "closed", "note": "fixed"},
    ),
    ("POST", "/api/v1/reports/{report_id}/merge"): ("/api/v1/reports/1/merge", {"into": 2}),
}
#: Operations that stream until the client leaves: read up to their first reading.
ENDLESS = {("GET", "/api/v1/console/devices/{device_id}/live")}

#: Operations whose answer carries the restricted value to a role that may read it.
CARRIES_VALUES = {
    ("GET", "/api/v1/devices/{device_id}"),
    ("GET", "/api/v1/devices/{device_id}/telemetry"),
    ("GET", "/api/v1/alerts"),
    ("GET", "/api/v1/alerts/{alert_id}"),
    ("GET", "/api/v1/alerts/{alert_id}/cap"),
    ("GET", "/api/v1/alerts/cap.atom"),
    ("POST", "/api/v1/alerts/{alert_id}/ack"),
    ("POST", "/api/v1/alerts/{alert_id}/resolve"),
    ("POST", "/api/v1/alerts/{alert_id}/comment"),
    ("GET", "/api/v1/stream"),
    ("GET", "/api/v1/console/devices/{device_id}/live"),
    ("POST", "/api/v1/console/silences/preview"),
}


def _seed(api: Api) -> dict[str, str]:
    """The restricted value in the registry, the store, an alert, its timeline and the stream."""
    api.registry.add(
        "mh-d07-1",
        "d07",
        "manhole",
        latest={"h2s_ppm": 47.25, "battery_v": 3.6},
        latest_ts_ms=NOW_MS - 600_000,
    )
    reading = Reading(
        "d07", "manhole", "mh-d07-1", NOW_MS - 600_000, {"h2s_ppm": 47.25, "battery_v": 3.6}
    )
    asyncio.run(api.store.write([reading]))
    alert = api.alerts.fire(
        "d07",
        "manhole",
        "mh-d07-1",
        rule_id="manhole-h2s",
        summary=SUMMARY,
        explanation=EXPLANATION,
    )
    silence = api.alerts.create_silence({"district": "d07"}, NOW_MS, NOW_MS + 60_000, "x", "x")
    api.events.preset = [
        AlertEvent(
            alert_id=alert.id,
            rule_id="manhole-h2s",
            status=AlertStatus.FIRING,
            severity=Severity.CRITICAL,
            district="d07",
            asset_type="manhole",
            source="mh-d07-1",
            ts_ms=NOW_MS,
            summary=SUMMARY,
            actor="rule",
            comment=SUMMARY,
        )
    ]
    return {"{alert}": alert.id, "{silence}": silence.id}


def _request(api: Api, operation: tuple[str, str], who: str) -> Any:
    ids = _seed(api)
    path, body = CALLS[operation]
    for placeholder, value in ids.items():
        path = path.replace(placeholder, value)
    if operation in ENDLESS:
        # The test client buffers a whole response, and this one never ends: its body is
        # read from the route's generator, up to the first reading, as the route serves it.
        principal = Principal(verify_key(api.ctx.conn, api.keys[who]))  # type: ignore[arg-type]
        device_id = path.split("/devices/")[1].split("/")[0]

        async def first_reading() -> str:
            body = live_readings(api.ctx, principal, device_id, poll_s=0.001)
            text = ""
            async for chunk in body:
                text += chunk
                if "data:" in chunk:
                    break
            await body.aclose()
            return text

        return SimpleNamespace(status_code=200, text=asyncio.run(first_reading()))
    return api.client.request(operation[0], path, json=body, headers=api.auth(who))


def test_calls_cover_every_operation_of_the_app(api: Api) -> None:
    """CALLS names every operation the app serves, so none escapes the checks below."""
    schema = api.client.get("/openapi.json").json()
    operations = {(m.upper(), p) for p, ops in schema["paths"].items() for m in ops}
    assert operations == set(CALLS)


@pytest.mark.parametrize("operation", sorted(CALLS), ids=" ".join)
def test_no_route_shows_a_viewer_a_restricted_value(api: Api, operation: tuple[str, str]) -> None:
    """Called by a viewer, no route's answer carries the restricted value; routes that carry
    values say they were withheld (naming the metric) rather than dropping the alert."""
    response = _request(api, operation, "viewer")
    assert SECRET not in response.text, response.text
    if operation in CARRIES_VALUES and response.status_code < 300:
        assert "withheld" in response.text
        assert "h2s_ppm" in response.text


@pytest.mark.parametrize("operation", sorted(CARRIES_VALUES), ids=" ".join)
def test_roles_that_may_read_the_metric_see_its_value(api: Api, operation: tuple[str, str]) -> None:
    """The same routes give an operator (who may read restricted metrics) the value itself:
    what the viewer test checks really travels through them."""
    response = _request(api, operation, "operator")
    assert response.status_code < 300, response.text
    assert SECRET in response.text


def test_withheld_alert_keeps_what_a_control_room_acts_on(api: Api) -> None:
    """A viewer still sees the alert, its severity, place, rule and timeline; the readings'
    texts are one sentence naming the metrics and the role that may read them."""
    ids = _seed(api)
    alert = api.client.get(f"/api/v1/alerts/{ids['{alert}']}", headers=api.auth("viewer")).json()
    assert (alert["severity"], alert["district"], alert["source"], alert["rule_id"]) == (
        "critical",
        "d07",
        "mh-d07-1",
        "manhole-h2s",
    )
    assert alert["withheld_metrics"] == ["h2s_ppm"]
    assert "need the operator role" in alert["summary"]
    assert alert["explanation"] == {
        "rule_version": "v1",
        "ts_ms": NOW_MS,
        "summary": "values withheld: h2s_ppm need the operator role or above",
        "withheld_metrics": ["h2s_ppm"],
    }
    assert [t["status"] for t in alert["timeline"]] == ["firing"]
    telemetry = api.client.get(
        "/api/v1/devices/mh-d07-1/telemetry", headers=api.auth("viewer")
    ).json()
    assert {p["metric"] for p in telemetry["points"]} == {"battery_v"}
    assert telemetry["withheld_metrics"] == ["h2s_ppm"]


def test_alerts_of_readable_metrics_are_untouched(api: Api) -> None:
    """An alert about a metric the viewer may read (water level) is shown as it is."""
    alert = api.alerts.fire("d03", "flood_gauge", "fg-d03-1", summary="water_level_m is 3.4")
    shown = api.client.get(f"/api/v1/alerts/{alert.id}", headers=api.auth("viewer")).json()
    assert shown["summary"] == "water_level_m is 3.4"
    assert shown["withheld_metrics"] == []
    assert shown["explanation"]["threshold"] == 3.0


def _principal(role: str) -> Principal:
    return Principal(ApiKey("0000000a", role, role, UNRESTRICTED, 0, None, None))


async def test_the_alert_manager_builds_cap_from_the_callers_view(
    tmp_path: Path, fake_clock: FakeClock
) -> None:
    """The real alert manager renders CAP documents and the feed from the view it is given:
    a viewer's has no restricted reading (description, notes), an operator's has it."""
    harness = Harness(tmp_path / "hub.db", fake_clock, BASIC_ROUTES)
    event = RuleEvent(
        rule_id="manhole-h2s",
        rule_version="v1",
        state=RuleState.FIRING,
        severity=Severity.CRITICAL,
        district="d07",
        asset_type="manhole",
        source="mh-d07-1",
        ts_ms=0,
        explanation=Explanation(SUMMARY, 10.0, {"h2s_ppm": 47.25}, ((0, 47.25),)),
        description="Hydrogen sulphide above 10 ppm",
    )
    manager = harness.manager
    await manager.handle([event])
    alert = manager.list_alerts(AlertFilter(), UNRESTRICTED)[0]
    catalog = load_catalog()
    viewer = Visibility(catalog, _principal("viewer")).alert_view
    operator = Visibility(catalog, _principal("operator")).alert_view
    for document in (
        manager.cap_xml(alert.id, view=viewer),
        manager.cap_feed(UNRESTRICTED, "http://hub", view=viewer),
    ):
        assert SECRET not in document
        assert "values withheld: h2s_ppm" in document
    assert SECRET in manager.cap_xml(alert.id, view=operator)
    assert SECRET in manager.cap_feed(UNRESTRICTED, "http://hub", view=operator)
    assert "Hydrogen sulphide above 10 ppm" in manager.cap_xml(alert.id, view=viewer)
    harness.close()
