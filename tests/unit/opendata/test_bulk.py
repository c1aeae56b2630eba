"""Bulk downloads: the DCAT catalog, the daily CSV files and their Data Packages (validated
with Frictionless), cached by content and re-checked against the policy."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import frictionless

from hub.opendata.policy import POLICY_HEADER
from tests.unit.api.conftest import NOW_MS
from tests.unit.opendata.conftest import DAY, OpenCity, leaks, readings_of

OPEN = "/open/v1"


def test_catalog_lists_each_dataset_in_dcat_terms(shared_city: OpenCity) -> None:
    """catalog.json is DCAT-AP in JSON-LD: per dataset its title, description, licence,
    update frequency, temporal and spatial coverage and its CSV and Data Package links."""
    city = shared_city
    catalog = city.json(f"{OPEN}/catalog.json")
    assert catalog["@type"] == "dcat:Catalog"
    assert catalog["@context"]["accrualPeriodicity"]["@id"] == "dct:accrualPeriodicity"
    assert catalog["openDataPolicyVersion"] == city.api.opendata.policy.version
    ids = [d["identifier"] for d in catalog["dataset"]]
    assert ids == [
        "air_quality-daily",
        "bridge-daily",
        "flood_gauge-daily",
        "streetlight-daily",
        "traffic_counter-daily",
    ]
    flood = next(d for d in catalog["dataset"] if d["identifier"] == "flood_gauge-daily")
    assert flood["license"] == "https://creativecommons.org/licenses/by/4.0/"
    assert flood["accrualPeriodicity"].endswith("/frequency/DAILY")
    yesterday = NOW_MS // DAY * DAY - DAY
    assert flood["temporal"] == {
        "@type": "dct:PeriodOfTime",
        "startDate": "2025-11-22",
        "endDate": "2025-11-23",
    }
    assert yesterday == 1_763_856_000_000  # 2025-11-23
    assert flood["spatial"]["bbox"].startswith("POLYGON((7.488 51.498,")
    links = {d["mediaType"]: d["downloadURL"] for d in flood["distribution"]}
    assert links == {
        "text/csv": "http://testserver/open/v1/datasets/flood_gauge-daily.csv",
        "application/json": "http://testserver/open/v1/datasets/flood_gauge-daily/datapackage.json",
    }
    assert "modified" in flood
    assert catalog["service"][0]["endpointURL"] == "http://testserver/sta/v1.1"
    assert leaks(json.dumps(catalog)) == []


def test_daily_csv_rows(shared_city: OpenCity) -> None:
    """A row per day, district and metric; device-level metrics with min and max, aggregate
    ones with the buckets they sum and no min or max; nothing hidden."""
    city = shared_city
    response = city.get(f"{OPEN}/datasets/flood_gauge-daily.csv")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers[POLICY_HEADER] == city.api.opendata.policy.version
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert {(r["date"], r["metric"]) for r in rows} == {
        (day, metric)
        for day in ("2025-11-22", "2025-11-23")
        for metric in ("rainfall_mm_h", "water_level_m")
    }
    level = next(r for r in rows if r["date"] == "2025-11-23" and r["metric"] == "water_level_m")
    assert (level["devices"], level["readings"], level["tier"], level["unit"]) == (
        "2",
        "288",
        "public",
        "m",
    )
    assert float(level["min"]) == 1.0
    assert float(level["max"]) == 2.1
    assert level["buckets"] == ""
    traffic = list(
        csv.DictReader(io.StringIO(city.get(f"{OPEN}/datasets/traffic_counter-daily.csv").text))
    )
    day = next(
        r for r in traffic if r["date"] == "2025-11-23" and r["metric"] == "vehicles_per_min"
    )
    assert (day["district"], day["tier"], day["min"], day["max"], day["buckets"]) == (
        "d01",
        "public_aggregate",
        "",
        "",
        "24",
    )
    assert {r["district"] for r in traffic} == {"d01"}  # d02 has fewer than k counters
    for dataset in ("flood_gauge", "traffic_counter", "streetlight", "air_quality", "bridge"):
        assert leaks(city.get(f"{OPEN}/datasets/{dataset}-daily.csv").text) == []


def test_every_data_package_validates_with_frictionless(
    shared_city: OpenCity, tmp_path: Path
) -> None:
    """Each dataset's datapackage.json, with its CSV, passes Frictionless validation (the
    descriptor as served; the resource read from a local copy of the CSV it links)."""
    city = shared_city
    catalog = city.json(f"{OPEN}/catalog.json")
    for dataset in catalog["dataset"]:
        name = dataset["identifier"]
        package = city.json(f"{OPEN}/datasets/{name}/datapackage.json")
        assert package["name"] == name
        assert package["licenses"][0]["name"] == "CC-BY-4.0"
        assert package["open_data_policy_version"] == city.api.opendata.policy.version
        resource = package["resources"][0]
        assert resource["path"] == f"http://testserver/open/v1/datasets/{name}.csv"
        folder = tmp_path / name
        folder.mkdir()
        (folder / "data.csv").write_bytes(city.get(f"{OPEN}/datasets/{name}.csv").content)
        resource["path"] = "data.csv"
        (folder / "datapackage.json").write_text(json.dumps(package))
        report = frictionless.validate(str(folder / "datapackage.json"))
        assert report.valid, report.flatten(["rowNumber", "fieldName", "type", "note"])
        assert sum(task.stats.get("rows") or 0 for task in report.tasks) > 0, name


def test_downloads_are_rendered_once_per_release(shared_city: OpenCity) -> None:
    """A CSV is kept until its dataset gets a new release: the same bytes and ETag again, a
    304 to If-None-Match; unknown datasets are 404."""
    city = shared_city
    first = city.get(f"{OPEN}/datasets/air_quality-daily.csv")
    kept = city.api.opendata.downloads["air_quality-daily"]
    second = city.get(f"{OPEN}/datasets/air_quality-daily.csv")
    assert city.api.opendata.downloads["air_quality-daily"] is kept
    assert first.content == second.content
    assert first.headers["etag"] == second.headers["etag"]
    assert first.headers["content-disposition"] == 'attachment; filename="air_quality-daily.csv"'
    again = city.get(
        f"{OPEN}/datasets/air_quality-daily.csv", headers={"If-None-Match": first.headers["etag"]}
    )
    assert again.status_code == 304
    assert city.get(f"{OPEN}/datasets/manhole-daily.csv").status_code == 404
    assert city.get(f"{OPEN}/datasets/water_main-daily/datapackage.json").status_code == 404


def test_a_new_day_is_a_new_download(city: OpenCity) -> None:
    """Once the next day is published the CSV grows, with another ETag."""
    before = city.get(f"{OPEN}/datasets/flood_gauge-daily.csv")
    city.api.clock.advance(DAY / 1000)
    city.write(readings_of(city.devices, NOW_MS, NOW_MS + DAY))
    city.publish()
    after = city.get(f"{OPEN}/datasets/flood_gauge-daily.csv")
    assert after.headers["etag"] != before.headers["etag"]
    assert "2025-11-24" in after.text
    assert "2025-11-24" not in before.text
