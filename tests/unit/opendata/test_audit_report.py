"""The audit report shows what open data published (from the release log) and the purpose
and expiry of the keys that read."""

from __future__ import annotations

from hub.api.keys import create_key
from tests.unit.api.conftest import NOW_MS
from tests.unit.opendata.conftest import DAY, OpenCity


def test_the_audit_report_lists_publications_and_key_purposes(city: OpenCity) -> None:
    """Per period: publish rows per dataset (releases, rows, cells suppressed under k) from
    the release log, and each reading key's purpose and expiry; in the CSV too. A report
    filtered to a key or a district has no publish rows (publications are city-wide)."""
    api = city.api
    key = create_key(
        api.ctx.conn,
        role="viewer",
        name="roads-study",
        now_ms=NOW_MS,
        expires_ms=NOW_MS + 90 * DAY,
        purpose="traffic study, roads dept.",
    )
    api.client.get("/api/v1/devices", headers={"Authorization": f"Bearer {key}"})
    report = api.client.get("/api/v1/audit/report?start=-1d", headers=api.auth("admin"))
    assert report.status_code == 200, report.text
    rows = report.json()["rows"]
    reader = next(r for r in rows if r["key_name"] == "roads-study")
    assert reader["key_purpose"] == "traffic study, roads dept."
    assert reader["key_expires_ms"] == NOW_MS + 90 * DAY
    published = {r["resource"]: r for r in rows if r["action"] == "publish"}
    log = api.opendata.state.releases(limit=1000)
    vehicles = [r for r in log if r.dataset == "traffic_counter/vehicles_per_min"]
    row = published["open_data:traffic_counter/vehicles_per_min"]
    assert row["requests"] == len(vehicles)
    assert row["rows"] == sum(r.rows for r in vehicles)
    assert row["suppressed"] == sum(r.suppressed for r in vehicles) > 0
    assert "open_data:policy" in published
    assert "open_data:flood_gauge-daily" in published
    one = api.client.get(
        "/api/v1/audit/report?start=-1d&resource=open_data:flood_gauge-daily",
        headers=api.auth("admin"),
    ).json()["rows"]
    assert [r["resource"] for r in one] == ["open_data:flood_gauge-daily"]
    by_district = api.client.get(
        "/api/v1/audit/report?start=-1d&district=d01", headers=api.auth("admin")
    ).json()["rows"]
    assert not any(r["action"] == "publish" for r in by_district)
    csv = api.client.get("/api/v1/audit/report?start=-1d&format=csv", headers=api.auth("admin"))
    assert "traffic study, roads dept." in csv.text
    assert ",publish," in csv.text
