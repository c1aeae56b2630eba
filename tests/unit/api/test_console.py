"""The console's own endpoints (hub/api/routes/console.py), its settings, and the files
it ships: vendored libraries as pinned, the demo's district outlines."""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from pydantic import ValidationError

from devices.districts import outlines
from devices.simulator import build_fleet
from hub.api.routes.console import live_readings
from hub.settings import ConsoleSettings, Settings
from tests.unit.api.conftest import Api, make_api

REPO = Path(__file__).resolve().parents[3]
OUTLINES = REPO / "devices" / "scenarios" / "demo-districts.geojson"


@pytest.fixture
def mapped(tmp_path: Path) -> Api:
    """The API with the demo's district outlines configured."""
    # Its own data dir: keys are unique by name, and a test may use `api` beside it.
    data_dir = tmp_path / "mapped"
    data_dir.mkdir()
    settings = Settings(data_dir=data_dir, console=ConsoleSettings(districts_geojson=OUTLINES))
    yield from make_api(data_dir, settings)


def test_config_tells_each_role_what_it_may_do(api: Api) -> None:
    """A viewer may not act on alerts or silence; an operator may; rules need rule_author."""
    viewer = api.client.get("/api/v1/console/config", headers=api.auth("viewer")).json()
    assert viewer["key"]["role"] == "viewer"
    assert not any(viewer["can"][k] for k in ("acknowledge", "resolve", "comment", "silence"))
    assert not viewer["can"]["rules"]
    assert not viewer["can"]["restricted_metrics"]
    operator = api.client.get("/api/v1/console/config", headers=api.auth("operator")).json()
    assert all(operator["can"][k] for k in ("acknowledge", "resolve", "comment", "silence"))
    assert operator["can"]["dead_letters"]
    assert not operator["can"]["rules"]
    author = api.client.get("/api/v1/console/config", headers=api.auth("rule_author")).json()
    assert author["can"]["rules"]
    # the open-data page (policy and release log) is for operators and up
    assert not viewer["can"]["open_data"]
    assert operator["can"]["open_data"]


def test_config_carries_the_catalog_units_and_what_the_key_may_read(api: Api) -> None:
    """Metrics come with their units; restricted ones are marked unreadable for a viewer."""
    viewer = api.client.get("/api/v1/console/config", headers=api.auth("viewer")).json()
    gauge = viewer["catalog"]["flood_gauge"]["metrics"]["water_level_m"]
    assert gauge["unit"] == "m"
    assert gauge["readable"]
    assert gauge["type"] == "number"
    assert viewer["catalog"]["flood_gauge"]["interval_s"] == 60
    assert viewer["map"] == {
        "tile_url": "",
        "tile_attribution": "",
        "tile_max_zoom": 19,
        "districts": False,
    }


def test_map_colours_devices_by_alert_then_link_state(api: Api) -> None:
    """A device's open alert's severity wins; else offline, stale, never heard, ok; districts
    carry their worst open alert, area alerts included."""
    api.registry.add("new-1", "d03", "bridge", last_seen_ms=None, status="unknown")
    api.alerts.fire("d07", "flood_gauge", "fg-d07-1", severity="warning")
    api.alerts.fire("d07", "flood_gauge", "fg-d07-1", severity="critical", rule_id="other")
    api.alerts.fire("d03", "flood_gauge", "_area", severity="emergency", rule_id="area")
    body = api.client.get("/api/v1/console/map", headers=api.auth("viewer")).json()
    states = {row[0]: row[5] for row in body["devices"]}
    assert states == {
        "fg-d03-1": "ok",
        "fg-d07-1": "critical",
        "mh-d07-1": "ok",
        "aq-d07-1": "offline",
        "new-1": "never",
    }
    assert body["districts"] == {"d03": "emergency", "d07": "critical"}
    api.registry.devices["mh-d07-1"] = replace(api.registry.devices["mh-d07-1"], stale=True)
    body = api.client.get("/api/v1/console/map", headers=api.auth("d07")).json()
    assert {row[0]: row[5] for row in body["devices"]}["mh-d07-1"] == "stale"
    assert "d03" not in body["districts"]
    assert all(row[1] == "d07" for row in body["devices"])


def test_district_outlines_are_served_inside_the_scope(mapped: Api, api: Api) -> None:
    """The configured file's features, only the key's districts; 404 when none configured."""
    everything = mapped.client.get(
        "/api/v1/console/districts.geojson", headers=mapped.auth("viewer")
    )
    assert everything.status_code == 200
    assert everything.headers["content-type"] == "application/geo+json"
    names = [f["properties"]["district"] for f in everything.json()["features"]]
    assert names == [f"d{n:02d}" for n in range(1, 9)]
    scoped = mapped.client.get("/api/v1/console/districts.geojson", headers=mapped.auth("d07"))
    assert [f["properties"]["district"] for f in scoped.json()["features"]] == ["d07"]
    assert mapped.client.get("/api/v1/console/config", headers=mapped.auth("viewer")).json()["map"][
        "districts"
    ]
    missing = api.client.get("/api/v1/console/districts.geojson", headers=api.auth("viewer"))
    assert missing.status_code == 404
    assert missing.json()["detail"]
    assert api.client.get("/api/v1/console/districts.geojson").status_code == 401


def test_a_broken_outlines_file_is_a_503_that_says_why(tmp_path: Path) -> None:
    """A file that is not a FeatureCollection answers 503 naming the problem, never a 500."""
    bad = tmp_path / "districts.geojson"
    bad.write_text('{"type": "Feature"}')
    settings = Settings(data_dir=tmp_path, console=ConsoleSettings(districts_geojson=bad))
    for api in make_api(tmp_path, settings):
        answer = api.client.get("/api/v1/console/districts.geojson", headers=api.auth("viewer"))
        assert answer.status_code == 503
        assert "FeatureCollection" in answer.json()["detail"]
        bad.unlink()
        answer = api.client.get("/api/v1/console/districts.geojson", headers=api.auth("viewer"))
        assert answer.status_code == 503
        assert "districts.geojson" in answer.json()["detail"]


def test_thresholds_of_a_device_leave_out_metrics_the_key_may_not_read(api: Api) -> None:
    """A gauge gets its rule's level; scope is enforced like the device's own page."""
    lines = api.client.get(
        "/api/v1/console/devices/fg-d07-1/thresholds", headers=api.auth("viewer")
    ).json()
    assert lines == [
        {
            "rule_id": "flood-critical",
            "metric": "water_level_m",
            "op": ">",
            "value": 3.0,
            "clear": 2.8,
            "severity": "critical",
        }
    ]
    assert (
        api.client.get(
            "/api/v1/console/devices/mh-d07-1/thresholds", headers=api.auth("viewer")
        ).json()
        == []
    )


def test_silence_preview_lists_matching_open_alerts_in_scope(api: Api) -> None:
    """The preview lists open alerts the matchers catch inside the key's scope only."""
    d03 = api.alerts.fire("d03", "flood_gauge", "fg-d03-1")
    d07 = api.alerts.fire("d07", "flood_gauge", "fg-d07-1")
    body = {"matchers": {"asset_type": "flood_gauge"}}
    everyone = api.client.post(
        "/api/v1/console/silences/preview", json=body, headers=api.auth("operator")
    )
    assert sorted(a["id"] for a in everyone.json()) == sorted([d03.id, d07.id])
    assert all("muted_by" in a for a in everyone.json())
    scoped = api.client.post(
        "/api/v1/console/silences/preview", json=body, headers=api.auth("d07-operator")
    )
    assert [a["id"] for a in scoped.json()] == [d07.id]
    viewer = api.client.post(
        "/api/v1/console/silences/preview", json=body, headers=api.auth("viewer")
    )
    assert viewer.status_code == 403


async def test_live_readings_follow_the_registry_and_withhold_restricted_metrics(api: Api) -> None:
    """An event per new latest reading (not per poll), without metrics the key may not read."""
    from hub.api.auth import Principal
    from hub.api.keys import verify_key

    viewer = Principal(verify_key(api.ctx.conn, api.keys["viewer"]))  # type: ignore[arg-type]
    api.registry.devices["mh-d07-1"] = replace(
        api.registry.devices["mh-d07-1"],
        latest={"h2s_ppm": 4.0, "water_level_m": 0.1},
        latest_ts_ms=1,
    )
    stream = live_readings(api.ctx, viewer, "mh-d07-1", poll_s=0.001, keepalive_s=1000)
    assert (await anext(stream)).startswith("retry:")
    first = await anext(stream)
    assert first.startswith("event: reading\n")
    assert json.loads(first.split("data: ")[1]) == {
        "ts_ms": 1,
        "metrics": {"water_level_m": 0.1},
        "withheld_metrics": ["h2s_ppm"],
    }
    api.registry.devices["mh-d07-1"] = replace(
        api.registry.devices["mh-d07-1"], latest={"water_level_m": 0.4}, latest_ts_ms=2
    )
    second = await asyncio.wait_for(anext(stream), 5)
    assert json.loads(second.split("data: ")[1])["ts_ms"] == 2
    del api.registry.devices["mh-d07-1"]
    assert (await asyncio.wait_for(anext(stream), 5)).startswith("event: gone")
    await stream.aclose()


def test_tile_source_setting_is_checked_and_reaches_the_content_security_policy(
    tmp_path: Path,
) -> None:
    """A tile URL must be http(s) with {z}/{x}/{y}; the page may then load images from it."""
    with pytest.raises(ValidationError):
        ConsoleSettings(tile_url="ftp://tiles.example/{z}/{x}/{y}.png")
    with pytest.raises(ValidationError):
        ConsoleSettings(tile_url="https://tiles.example/tile.png")
    tiles = ConsoleSettings(tile_url="https://{s}.tiles.city.example/{z}/{x}/{y}.png")
    assert tiles.tile_origin == "https://*.tiles.city.example"
    settings = Settings(data_dir=tmp_path, console=tiles)
    for api in make_api(tmp_path, settings):
        csp = api.client.get("/").headers["content-security-policy"]
        assert "img-src 'self' data: https://*.tiles.city.example;" in csp
        config = api.client.get("/api/v1/console/config", headers=api.auth("viewer")).json()
        assert config["map"]["tile_url"] == tiles.tile_url


def test_the_console_page_and_its_assets_are_served_by_the_hub(api: Api) -> None:
    """The page, its modules, languages, favicon and libraries come from the hub itself."""
    page = api.client.get("/")
    assert page.status_code == 200
    for path in ("/static/js/main.js", "/static/vendor/leaflet/leaflet.js", "/static/favicon.svg"):
        assert path in page.text, path
        assert api.client.get(path).status_code == 200, path
    assert api.client.get("/static/vendor/leaflet/LICENSE").status_code == 200
    assert "http://" not in page.text
    assert "https://" not in page.text
    english = api.client.get("/static/i18n/en.json").json()
    chinese = api.client.get("/static/i18n/zh-CN.json").json()
    assert set(english) == {k for k in chinese if not k.startswith("unit.")} | {
        k for k in english if k.startswith("unit.")
    }


def test_vendored_libraries_match_their_pinned_manifest() -> None:
    """Every vendored file is byte for byte the one the pinned npm package ships."""
    check = subprocess.run(
        [sys.executable, str(REPO / "deploy" / "console" / "vendor.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout
    manifest = json.loads((REPO / "hub/api/static/vendor/VENDORED.json").read_text())
    for package in manifest["packages"]:
        assert any("LICENSE" in f for f in package["files"]), package["name"]


def test_demo_district_outlines_are_the_generated_ones_and_hold_the_fleet() -> None:
    """The shipped file is what devices.districts writes; nearly every demo device lies in
    its own district's polygon (the outlines are the Voronoi cells of the district centres)."""
    shipped = json.loads(OUTLINES.read_text())
    assert shipped == json.loads(json.dumps(outlines()))

    def inside(x: float, y: float, ring: list[list[float]]) -> bool:
        hit = False
        for (x1, y1), (x2, y2) in itertools.pairwise(ring):
            if (y1 > y) != (y2 > y) and x < (x2 - x1) * (y - y1) / (y2 - y1) + x1:
                hit = not hit
        return hit

    rings = {
        f["properties"]["district"]: f["geometry"]["coordinates"][0] for f in shipped["features"]
    }
    fleet = build_fleet(320, 8)
    home = sum(inside(s.longitude, s.latitude, rings[s.district]) for s in fleet)
    assert home >= 0.95 * len(fleet)
