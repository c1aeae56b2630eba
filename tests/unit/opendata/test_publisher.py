"""Publication: k-suppressed cells, the delay, daily rows without differencing, the release
log, published-once, and the current policy re-applied to what was published before."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from statistics import mean

import pytest

from hub.api.app import create_app
from hub.catalog import DEFAULT_CATALOG_DIR, load_catalog
from hub.messages import Reading
from hub.opendata.publisher import digest
from hub.opendata.service import OpenData
from hub.opendata.state import CellQuery, SqliteOpenDataState
from hub.sqlite import STATE_DB, connect
from hub.store.base import StoreUnavailable
from tests.unit.api.conftest import NOW_MS
from tests.unit.opendata.conftest import (
    CITY,
    DAY,
    HOUR,
    STEP,
    OpenCity,
    make_city,
)


def cells(city: OpenCity, metric: str = "vehicles_per_min", district: str | None = None) -> list:
    """Every stored cell of a traffic metric."""
    return city.api.opendata.state.cells(
        CellQuery("traffic_counter", metric, district, HOUR, 1, 0, 2**62, limit=10_000)
    )


def test_cells_under_k_are_suppressed_not_zeroed(city: OpenCity) -> None:
    """d01 has 6 counters (k is 5): its hours are published as means over 6 devices; d02 has 3:
    none of its hours is stored or served, and the release log counts them as suppressed."""
    published = cells(city)
    assert published
    assert {c.district for c in published} == {"d01"}
    assert all(c.devices == 6 for c in published)
    assert all(c.readings == 6 * (HOUR // STEP) for c in published)
    first = published[0]
    in_hour = [
        r.metrics["vehicles_per_min"]
        for r in city.readings
        if r.district == "d01"
        and r.asset_type == "traffic_counter"
        and first.start_ms <= r.ts_ms < first.end_ms
    ]
    assert first.readings == len(in_hour)
    assert first.mean == pytest.approx(mean(in_hour))
    releases = city.api.opendata.state.releases(kind="aggregates", limit=1000)
    vehicles = [r for r in releases if r.dataset == "traffic_counter/vehicles_per_min"]
    assert sum(r.rows for r in vehicles) == len(published)
    assert sum(r.suppressed for r in vehicles) == len(published)  # d02's hour for each d01's
    d02 = city.json(
        "/sta/v1.1/Datastreams('d02:traffic_counter:vehicles_per_min')/Observations?$count=true"
    )
    assert d02 == {"@iot.count": 0, "value": []}


def test_the_delay_holds(tmp_path: Path) -> None:
    """A cell is published once its hour has ended and the hour's delay (1 h) has passed,
    not a millisecond before; the daily row waits for the day's end plus that delay."""
    for city in make_city(tmp_path):
        city.publish()
        last = max(c.start_ms for c in cells(city))
        assert last + HOUR + HOUR <= NOW_MS  # ended over an hour ago
        assert last == NOW_MS - 2 * HOUR
        city.api.clock.advance(HOUR / 1000 - 0.001)
        city.publish()
        assert max(c.start_ms for c in cells(city)) == last
        city.api.clock.advance(0.001)
        city.publish()
        assert max(c.start_ms for c in cells(city)) == last + HOUR
        days = {r.day_ms for r in city.api.opendata.state.daily("traffic_counter")}
        assert max(days) == NOW_MS // DAY * DAY - DAY  # yesterday; today is not over


def test_daily_rows_of_aggregates_sum_the_published_cells_only(city: OpenCity) -> None:
    """The day of an aggregate-only metric is the readings-weighted mean of its published
    hours, with the fewest devices of any and no min or max: nothing a published hour does
    not already say (no differencing against a suppressed one)."""
    day = NOW_MS // DAY * DAY - DAY
    rows = [r for r in city.api.opendata.state.daily("traffic_counter") if r.day_ms == day]
    assert {(r.district, r.metric) for r in rows} == {
        ("d01", "vehicles_per_min"),
        ("d01", "avg_speed_kmh"),
    }
    row = next(r for r in rows if r.metric == "vehicles_per_min")
    hours = [c for c in cells(city) if day <= c.start_ms < day + DAY]
    assert row.cells == len(hours) == 24
    assert row.readings == sum(c.readings for c in hours)
    assert row.mean == pytest.approx(sum(c.mean * c.readings for c in hours) / row.readings)
    assert row.devices == min(c.devices for c in hours)
    assert (row.min, row.max, row.tier) == (None, None, "public_aggregate")


def test_daily_rows_of_device_level_metrics_are_fresh_figures(city: OpenCity) -> None:
    """A public metric's day is computed over every reading: devices, readings, mean, min, max."""
    day = NOW_MS // DAY * DAY - DAY
    row = next(
        r
        for r in city.api.opendata.state.daily("flood_gauge")
        if r.day_ms == day and r.metric == "water_level_m"
    )
    values = [
        r.metrics["water_level_m"]
        for r in city.readings
        if r.asset_type == "flood_gauge" and day <= r.ts_ms < day + DAY
    ]
    assert (row.devices, row.readings, row.tier) == (2, len(values), "public")
    assert row.mean == pytest.approx(mean(values))
    assert (row.min, row.max) == (min(values), max(values))
    names = {r.metric for r in city.api.opendata.state.daily("flood_gauge")}
    assert names == {"water_level_m", "rainfall_mm_h"}  # battery_v is internal


def test_the_release_log_says_what_when_and_under_which_policy(city: OpenCity) -> None:
    """The first entry puts the policy in effect; every entry names that version; a daily
    release's fingerprint is the SHA-256 of the rows it published; publishing again when
    nothing is due logs nothing."""
    state = city.api.opendata.state
    log = list(reversed(state.releases(limit=1000)))
    version = city.api.opendata.policy.version
    assert log[0].kind == "policy"
    assert log[0].detail["policy"]["traffic_counter"]["metrics"]["vehicles_per_min"] == {
        "tier": "public_aggregate",
        "type": "number",
        "unit": "vehicles/min",
        "k": 5,
        "bucket_s": 3600,
        "delay_s": 3600,
    }
    assert "manhole" not in log[0].detail["policy"]
    assert {r.policy_version for r in log} == {version}
    assert all(r.ts_ms == NOW_MS for r in log)
    daily = next(r for r in log if r.dataset == "flood_gauge-daily")
    rows = [
        dataclasses.replace(r, release_id=0)
        for r in state.daily("flood_gauge")
        if r.release_id == daily.id
    ]
    assert daily.rows == len(rows) > 0
    assert daily.sha256 == digest(rows)
    assert (daily.period_end_ms or 0) - (daily.period_start_ms or 0) == DAY
    assert city.publish() == []
    assert len(state.releases(limit=1000)) == len(log)


def test_published_once_late_readings_do_not_rewrite(city: OpenCity) -> None:
    """Readings that arrive for an hour already published stay in the store but do not
    change what was published (the download stays reproducible)."""
    before = cells(city)
    hour = before[0]
    late = [
        Reading(
            "d01", "traffic_counter", f"tc-d01-{i}", hour.start_ms + 1, {"vehicles_per_min": 400.0}
        )
        for i in range(6)
    ]
    city.write(late)
    city.publish()
    assert cells(city) == before


def test_a_stricter_policy_withdraws_what_no_longer_qualifies(
    city: OpenCity, tmp_path: Path
) -> None:
    """Published under k=5, the d01 hours (6 devices) vanish from every answer as soon as the
    catalog asks for k=7: stored rows are re-checked against the policy in effect, which is a
    new version and is logged."""
    catalog_dir = tmp_path / "stricter"
    catalog_dir.mkdir()
    for path in DEFAULT_CATALOG_DIR.glob("*.yaml"):
        text = path.read_text().replace(
            "{k: 5, bucket: 1h, delay: 1h}", "{k: 7, bucket: 1h, delay: 1h}"
        )
        (catalog_dir / path.name).write_text(text)
    api = city.api
    conn = connect(tmp_path / STATE_DB)
    stricter = OpenData(
        api.ctx.settings.open_data,
        load_catalog(catalog_dir),
        api.registry,
        api.store,
        SqliteOpenDataState(conn),
        api.clock,
    )
    assert stricter.policy.version != api.opendata.policy.version
    from fastapi.testclient import TestClient

    with TestClient(create_app(dataclasses.replace(api.ctx, opendata=stricter))) as client:
        stream = "Datastreams('d01:traffic_counter:vehicles_per_min')"
        assert api.client.get(f"/sta/v1.1/{stream}/Observations").json()["value"]
        assert client.get(f"/sta/v1.1/{stream}/Observations").json()["value"] == []
        csv = client.get("/open/v1/datasets/traffic_counter-daily.csv").text
        assert csv.strip().count("\n") == 0  # the header only
        asyncio.run(stricter.publisher.publish_due())
        policies = stricter.state.releases(kind="policy", limit=10)
        assert policies[0].policy_version == stricter.policy.version
        assert policies[0].detail["policy"]["traffic_counter"]["metrics"]["avg_speed_kmh"]["k"] == 7
    conn.close()


def test_a_store_outage_is_waited_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """While the store is unavailable nothing is published and the stream stays where it was;
    once it is back, the same stretch is published."""
    for city in make_city(tmp_path, devices=[d for d in CITY if d.asset_type == "traffic_counter"]):
        store = city.api.store
        real = store.area_aggregate

        async def down(*_a: object, **_k: object) -> list:
            raise StoreUnavailable("down")

        monkeypatch.setattr(store, "area_aggregate", down)
        with pytest.raises(StoreUnavailable):
            city.publish()
        assert cells(city) == []
        monkeypatch.setattr(store, "area_aggregate", real)
        city.publish()
        assert len({c.start_ms for c in cells(city)}) == (2 * DAY - HOUR) // HOUR
