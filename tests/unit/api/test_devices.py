"""Devices and telemetry endpoints: filters, scope, classification, provisioning, limits."""

from __future__ import annotations

import pytest

from hub.messages import Reading
from tests.unit.api.conftest import NOW_MS, Api

MINUTE = 60_000


def test_list_filters_and_pages(api: Api) -> None:
    """District, asset type, status and stale filters and limit/offset select devices."""
    get = api.client.get
    h = api.auth("viewer")
    ids = lambda r: [d["device_id"] for d in r.json()]  # noqa: E731
    assert ids(get("/api/v1/devices?district=d07", headers=h)) == [
        "aq-d07-1",
        "fg-d07-1",
        "mh-d07-1",
    ]
    assert ids(get("/api/v1/devices?asset_type=manhole", headers=h)) == ["mh-d07-1"]
    assert ids(get("/api/v1/devices?status=offline", headers=h)) == ["aq-d07-1"]
    assert ids(get("/api/v1/devices?stale=true", headers=h)) == ["aq-d07-1"]
    assert ids(get("/api/v1/devices?limit=1&offset=1", headers=h)) == ["fg-d03-1"]


@pytest.mark.parametrize(
    "query",
    ["district=D07", "status=broken", "stale=maybe", "limit=0", "limit=5000", "offset=-1"],
)
def test_list_bad_parameters_are_422(api: Api, query: str) -> None:
    """Malformed filters are refused with 422, never a 500."""
    response = api.client.get(f"/api/v1/devices?{query}", headers=api.auth("viewer"))
    assert response.status_code == 422
    assert "detail" in response.json()


def test_scoped_key_sees_only_its_district(api: Api) -> None:
    """A key scoped to d07 never lists d03 devices, even when asking for d03."""
    h = api.auth("d07")
    listed = api.client.get("/api/v1/devices", headers=h).json()
    assert {d["district"] for d in listed} == {"d07"}
    assert api.client.get("/api/v1/devices?district=d03", headers=h).json() == []
    assert api.client.get("/api/v1/devices/fg-d03-1", headers=h).status_code == 403
    assert api.client.get("/api/v1/devices/fg-d03-1/telemetry", headers=h).status_code == 403


def test_asset_type_scope(api: Api) -> None:
    """A key scoped to manholes sees manholes only."""
    listed = api.client.get("/api/v1/devices", headers=api.auth("manhole")).json()
    assert [d["device_id"] for d in listed] == ["mh-d07-1"]


def test_detail_withholds_restricted_metrics_from_viewers(api: Api) -> None:
    """Restricted metrics (manhole gas) are withheld from viewers and shown to operators."""
    viewer = api.client.get("/api/v1/devices/mh-d07-1", headers=api.auth("viewer")).json()
    assert viewer["latest"] == {"water_level_m": 0.1}
    assert viewer["withheld_metrics"] == ["h2s_ppm"]
    operator = api.client.get("/api/v1/devices/mh-d07-1", headers=api.auth("operator")).json()
    assert operator["latest"] == {"h2s_ppm": 4.0, "water_level_m": 0.1}


def test_unknown_device_is_404_and_bad_id_422(api: Api) -> None:
    """An unknown device is 404; an id breaking the contract pattern is 422."""
    assert api.client.get("/api/v1/devices/nope", headers=api.auth("viewer")).status_code == 404
    assert api.client.get("/api/v1/devices/-bad", headers=api.auth("viewer")).status_code == 422


def test_provisioning_create_update_delete(api: Api) -> None:
    """Admins create (201, 409 on repeat), update and delete (204, then 404) devices."""
    h = api.auth("admin")
    body = {
        "device_id": "br-1",
        "district": "d05",
        "asset_type": "bridge",
        "latitude": 51.5,
        "longitude": -0.12,
    }
    created = api.client.post("/api/v1/devices", json=body, headers=h)
    assert created.status_code == 201
    assert created.json()["provisioned"] is True
    assert api.client.post("/api/v1/devices", json=body, headers=h).status_code == 409
    update = {"district": "d05", "asset_type": "bridge", "metadata": {"span": "north"}}
    updated = api.client.put("/api/v1/devices/br-1", json=update, headers=h)
    assert updated.json()["metadata"] == {"span": "north"}
    assert api.client.delete("/api/v1/devices/br-1", headers=h).status_code == 204
    assert api.client.delete("/api/v1/devices/br-1", headers=h).status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"device_id": "x", "district": "d05"},
        {"device_id": "x", "district": "d05", "asset_type": "bridge", "latitude": 91},
        {"device_id": "x y", "district": "d05", "asset_type": "bridge"},
        {"device_id": "x", "district": "d05", "asset_type": "bridge", "owner": "me"},
    ],
)
def test_provisioning_bad_bodies_are_422(api: Api, body: dict[str, object]) -> None:
    """Missing fields, out-of-range coordinates, bad ids and unknown fields are 422."""
    response = api.client.post("/api/v1/devices", json=body, headers=api.auth("admin"))
    assert response.status_code == 422


def test_scoped_admin_cannot_provision_outside_scope(api: Api) -> None:
    """A d07 admin may not create a d03 device nor move a d07 device to d03."""
    h = api.auth("d07")
    body = {"device_id": "x1", "district": "d03", "asset_type": "bridge"}
    assert api.client.post("/api/v1/devices", json=body, headers=h).status_code == 403
    move = {"district": "d03", "asset_type": "flood_gauge"}
    assert api.client.put("/api/v1/devices/fg-d07-1", json=move, headers=h).status_code == 403
    assert api.client.delete("/api/v1/devices/fg-d03-1", headers=h).status_code == 403


async def _seed(api: Api, minutes: int = 120) -> None:
    readings = [
        Reading(
            "d03",
            "flood_gauge",
            "fg-d03-1",
            NOW_MS - (minutes - i) * MINUTE,
            {"water_level_m": float(i), "battery_v": 3.5},
        )
        for i in range(minutes)
    ]
    await api.store.write(readings)


async def test_telemetry_raw_and_aggregated(api: Api) -> None:
    """Raw points come back in range; every/agg buckets aggregate them."""
    await _seed(api)
    h = api.auth("viewer")
    raw = api.client.get(
        "/api/v1/devices/fg-d03-1/telemetry?metric=water_level_m&start=-30m", headers=h
    ).json()
    assert len(raw["points"]) == 30
    assert raw["points"][-1]["value"] == 119.0
    agg = api.client.get(
        "/api/v1/devices/fg-d03-1/telemetry",
        params={"metric": "water_level_m", "start": "-2h", "every": "1h", "agg": "max"},
        headers=h,
    ).json()
    assert agg["agg"] == "max"
    assert agg["every_ms"] == 3_600_000
    assert max(p["value"] for p in agg["points"]) == 119.0
    default_agg = api.client.get(
        "/api/v1/devices/fg-d03-1/telemetry?every=1h&start=-2h&metric=battery_v", headers=h
    ).json()
    assert default_agg["agg"] == "mean"
    assert {p["value"] for p in default_agg["points"]} == {3.5}


async def test_telemetry_accepts_rfc3339_and_epoch(api: Api) -> None:
    """start/end take epoch ms and RFC 3339 with offset."""
    await _seed(api)
    h = api.auth("viewer")
    by_ms = api.client.get(
        f"/api/v1/devices/fg-d03-1/telemetry?start={NOW_MS - 10 * MINUTE}&end={NOW_MS}", headers=h
    ).json()
    by_text = api.client.get(
        "/api/v1/devices/fg-d03-1/telemetry",
        params={"start": "2025-11-24T15:50:00Z", "end": "2025-11-24T16:00:00+00:00"},
        headers=h,
    ).json()
    assert by_ms["points"] == by_text["points"]
    assert len(by_ms["points"]) == 20  # two metrics, ten minutes


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("start=yesterday", 422),
        ("start=2025-11-24T15:50:00", 422),
        ("end=-2h&start=-1h", 422),
        ("every=5 minutes", 422),
        ("every=500ms", 422),
        ("agg=median&every=1m", 422),
        ("agg=max", 422),
        ("metric=Bad-Name", 422),
        ("start=-400d", 422),
        ("start=-30d&every=1m", 422),
        ("metric=water_level_m,", 422),
        ("metric= water_level_m", 422),
        ("start=-1h&strat=-2h", 422),
    ],
)
def test_telemetry_bad_or_oversized_queries(api: Api, query: str, status: int) -> None:
    """Malformed or unknown parameters, and ranges or point counts beyond the limits, are one
    status: 422 with a detail saying what to change."""
    response = api.client.get(
        f"/api/v1/devices/fg-d03-1/telemetry?{query}", headers=api.auth("viewer")
    )
    assert response.status_code == status, response.text
    assert isinstance(response.json()["detail"], str | list)


async def test_telemetry_raw_point_limit_is_422(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """More raw points than the limit is a 422 that says to aggregate."""
    from hub.api.routes import telemetry

    monkeypatch.setattr(telemetry, "MAX_POINTS", 10)
    await _seed(api, minutes=30)
    response = api.client.get(
        "/api/v1/devices/fg-d03-1/telemetry?start=-1h", headers=api.auth("viewer")
    )
    assert response.status_code == 422
    assert "every=" in response.json()["detail"]


async def test_telemetry_restricted_metrics(api: Api) -> None:
    """Viewers get 403 asking for a restricted metric and never see its points in a full query."""
    await api.store.write(
        [
            Reading(
                "d07",
                "manhole",
                "mh-d07-1",
                NOW_MS - MINUTE,
                {"h2s_ppm": 9.0, "water_level_m": 0.2},
            )
        ]
    )
    url = "/api/v1/devices/mh-d07-1/telemetry"
    assert api.client.get(f"{url}?metric=h2s_ppm", headers=api.auth("viewer")).status_code == 403
    viewer = api.client.get(url, headers=api.auth("viewer")).json()
    assert {p["metric"] for p in viewer["points"]} == {"water_level_m"}
    operator = api.client.get(url, headers=api.auth("operator")).json()
    assert {p["metric"] for p in operator["points"]} == {"h2s_ppm", "water_level_m"}


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        (
            "POST",
            "/api/v1/devices",
            {"device_id": "x1", "district": "d03", "asset_type": "flod_gauge"},
            "asset_type",
        ),
        ("PUT", "/api/v1/devices/x1", {"district": "d03", "asset_type": "pump"}, "asset_type"),
        (
            "POST",
            "/api/v1/devices",
            {"device_id": "x1", "district": "alerts", "asset_type": "bridge"},
            "district",
        ),
        (
            "PUT",
            "/api/v1/devices/fg-d03-1",
            {"district": "alerts", "asset_type": "flood_gauge"},
            "district",
        ),
    ],
)
def test_provisioning_checks_the_catalog_and_reserved_districts(
    api: Api, method: str, path: str, body: dict[str, object], field: str
) -> None:
    """An asset type outside the device catalog, or the reserved district 'alerts', is a 422
    on the field (as hub devices import and ingest refuse them), and nothing changes."""
    before = dict(api.registry.devices)
    response = api.client.request(method, path, json=body, headers=api.auth("admin"))
    assert response.status_code == 422, response.text
    detail = response.json()["detail"][0]
    assert detail["loc"] == ["body", field]
    assert ("catalog" if field == "asset_type" else "reserved") in detail["msg"]
    assert api.registry.devices == before
