"""One contract for every telemetry store: the embedded SQLite store and a real InfluxDB 1.x.

Each test runs against both (``store`` is parametrized); expected answers are
computed here in plain Python, so passing on both means both agree.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from hub.clock import FakeClock
from hub.messages import MetricValue, Reading
from hub.settings import InfluxSettings
from hub.store.base import AGGREGATES, AreaQuery, Point, TelemetryQuery, TelemetryStore
from hub.store.embedded import EmbeddedStore
from hub.store.influx import InfluxStore
from tests.conftest import Names
from tests.services import InfluxDB1

pytestmark = pytest.mark.integration

BASE = 1_764_000_000_000  # a whole hour: 2025-11-24T16:00:00Z
MINUTE = 60_000


@pytest.fixture(params=["embedded", "influxdb"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, names: Names, fake_clock: FakeClock
) -> AsyncIterator[TelemetryStore]:
    """An opened store of each kind, empty (a fresh SQLite file or a fresh database)."""
    s: TelemetryStore
    if request.param == "embedded":
        s = EmbeddedStore(tmp_path / "telemetry.db")
    else:
        server: InfluxDB1 = request.getfixturevalue("influxdb")
        s = InfluxStore(InfluxSettings(url=server.url, database=names.database()), clock=fake_clock)
    await s.open()
    yield s
    await s.close()


def _stored(reading: Reading) -> Reading:
    """What the layout keeps of a reading: numbers as floats, bools as bools, no receive time."""
    metrics: dict[str, MetricValue] = {
        k: (v if isinstance(v, bool) else float(v)) for k, v in reading.metrics.items()
    }
    return Reading(
        reading.district,
        reading.asset_type,
        reading.device_id,
        reading.ts_ms,
        metrics,
        seq=reading.seq,
        quality=reading.quality,
        out_of_range=reading.out_of_range,
    )


async def _history(store: TelemetryStore, start: int = 0, end: int = 2**62) -> list[Reading]:
    return [r async for r in store.history(start, end)]


def _typed(reading: Reading) -> list[tuple[str, type, MetricValue]]:
    return sorted((k, type(v), v) for k, v in reading.metrics.items())


async def test_single_reading_lands_exactly(store: TelemetryStore) -> None:
    """One reading is one point: measurement, tags, typed fields, seq and ms timestamp."""
    reading = Reading(
        "d07",
        "manhole",
        "mh-1",
        BASE + 123,
        {"methane_pct_lel": 3.5, "h2s_ppm": 1, "lid_open": False},
        seq=42,
        received_ms=BASE + 200,
    )
    result = await store.write([reading])
    assert result.written == 1
    assert list(result.refused) == []
    [back] = await _history(store)
    assert back == _stored(reading)
    assert _typed(back) == [
        ("h2s_ppm", float, 1.0),
        ("lid_open", bool, False),
        ("methane_pct_lel", float, 3.5),
    ]
    assert type(back.seq) is int


async def test_influx_layout_field_and_tag_types(
    influxdb: InfluxDB1, names: Names, fake_clock: FakeClock
) -> None:
    """In InfluxDB: tags district/device_id, float metrics, boolean bools, integer seq, strings."""
    db = names.database()
    store = InfluxStore(InfluxSettings(url=influxdb.url, database=db), clock=fake_clock)
    await store.open()
    try:
        await store.write(
            [
                Reading("d01", "streetlight", "sl-1", BASE, {"power_w": 60, "lamp_on": True}, 7),
                Reading(
                    "d01",
                    "streetlight",
                    "sl-1",
                    BASE + 1,
                    {"power_w": 9999.5, "lamp_on": True},
                    quality="out_of_range",
                    out_of_range=("power_w",),
                ),
            ]
        )
    finally:
        await store.close()
    fields = influxdb.query('SHOW FIELD KEYS FROM "streetlight"', db)
    types = dict(fields["results"][0]["series"][0]["values"])  # type: ignore[index]
    assert types == {
        "lamp_on": "boolean",
        "power_w": "float",
        "seq": "integer",
        "quality": "string",
        "out_of_range": "string",
    }
    tags = influxdb.query('SHOW TAG KEYS FROM "streetlight"', db)
    assert {v[0] for v in tags["results"][0]["series"][0]["values"]} == {  # type: ignore[index]
        "district",
        "device_id",
    }
    rows = influxdb.query('SELECT * FROM "streetlight"', db)
    series = rows["results"][0]["series"][0]  # type: ignore[index]
    first, second = (dict(zip(series["columns"], v, strict=True)) for v in series["values"])
    assert first["time"] == BASE
    assert first["seq"] == 7
    assert first["quality"] is None
    assert second["time"] == BASE + 1
    assert second["quality"] == "out_of_range"
    assert second["out_of_range"] == "power_w"


async def test_batch_write_and_idempotent_rewrite(store: TelemetryStore) -> None:
    """A batch lands whole; writing it again (a redelivery) leaves one point per reading."""
    readings = [
        Reading(
            f"d0{i % 3}",
            "flood_gauge",
            f"fg-{i % 5}",
            BASE + i * 1000,
            {"water_level_m": i / 10},
            i,
        )
        for i in range(200)
    ]
    assert (await store.write(readings)).written == 200
    assert (await store.write(readings)).written == 200
    back = await _history(store)
    assert len(back) == 200
    assert back == [_stored(r) for r in readings]


async def test_bools_ints_floats_and_quality_round_trip(store: TelemetryStore) -> None:
    """Values keep their stored types; out-of-range readings keep quality and metric names."""
    readings = [
        Reading(
            "d01", "streetlight", "sl-9", BASE, {"lamp_on": True, "power_w": 0, "voltage_v": 229.9}
        ),
        Reading(
            "d01",
            "streetlight",
            "sl-9",
            BASE + MINUTE,
            {"lamp_on": False, "power_w": 12345.0, "voltage_v": -1e-3},
            seq=2**40,
            quality="out_of_range",
            out_of_range=("power_w", "voltage_v"),
        ),
    ]
    await store.write(readings)
    back = await _history(store)
    assert back == [_stored(r) for r in readings]
    assert [_typed(r) for r in back] == [_typed(_stored(r)) for r in readings]


async def test_field_type_conflict_refuses_only_that_point(store: TelemetryStore) -> None:
    """A bool sent where numbers are stored is refused with a reason; the rest is written."""
    await store.write([Reading("d01", "bridge", "br-1", BASE, {"strain_ue": 10.0})])
    batch = [
        Reading("d01", "bridge", "br-1", BASE + 1000, {"strain_ue": 11.0}, 1),
        Reading("d01", "bridge", "br-2", BASE + 2000, {"strain_ue": True}, 2),
        Reading("d01", "bridge", "br-1", BASE + 3000, {"strain_ue": 12.0}, 3),
    ]
    result = await store.write(batch)
    assert [r for r, _ in result.refused] == [batch[1]]
    assert "conflict" in result.refused[0][1]
    assert result.written == 2
    back = await _history(store)
    assert [r.ts_ms for r in back] == [BASE, BASE + 1000, BASE + 3000]


async def test_reserved_metric_name_is_refused(store: TelemetryStore) -> None:
    """A metric called seq/quality/out_of_range would clash with the layout: refused, not mixed."""
    bad = Reading("d01", "bridge", "br-1", BASE, {"seq": 1.0})
    good = Reading("d01", "bridge", "br-1", BASE + 1, {"strain_ue": 1.0})
    result = await store.write([bad, good])
    assert [r for r, _ in result.refused] == [bad]
    assert "reserved" in result.refused[0][1]
    assert await _history(store) == [_stored(good)]


def _dataset() -> list[Reading]:
    """Two hours of one device every 7 minutes, plus a neighbour that must not leak in."""
    rng = random.Random(7)
    out = []
    for i in range(18):
        ts = BASE + i * 7 * MINUTE + rng.randrange(0, 1000)
        out.append(
            Reading(
                "d02",
                "air_quality",
                "aq-1",
                ts,
                {
                    "pm2_5_ug_m3": round(rng.uniform(0, 80), 3),
                    "no2_ug_m3": rng.randrange(0, 90),
                    "heater_on": i % 3 == 0,
                },
                seq=i,
            )
        )
        out.append(Reading("d02", "air_quality", "aq-2", ts, {"pm2_5_ug_m3": 999.0}))
    return out


def _expected(readings: list[Reading], query: TelemetryQuery) -> list[tuple[int, str, float]]:
    """The reference semantics, in plain Python."""
    rows = sorted(
        (
            r
            for r in readings
            if r.device_id == query.device_id and query.start_ms <= r.ts_ms < query.end_ms
        ),
        key=lambda r: r.ts_ms,
    )
    wanted = set(query.metrics) if query.metrics else None
    if query.every_ms is None:
        pts = [
            (r.ts_ms, k, float(v))
            for r in rows[: query.limit]
            for k, v in sorted(r.metrics.items())
            if wanted is None or k in wanted
        ]
        return pts[: query.limit]
    buckets: dict[tuple[int, str], list[float]] = {}
    for r in rows:
        for k, v in r.metrics.items():
            if (wanted is not None and k not in wanted) or (
                query.agg in ("mean", "min", "max") and isinstance(v, bool)
            ):
                continue
            buckets.setdefault((r.ts_ms - r.ts_ms % query.every_ms, k), []).append(float(v))
    fn = {
        "mean": lambda v: sum(v) / len(v),
        "min": min,
        "max": max,
        "last": lambda v: v[-1],
        "count": len,
    }
    assert query.agg is not None
    return [(b, k, float(fn[query.agg](v))) for (b, k), v in sorted(buckets.items())][: query.limit]


def _as_tuples(points: list[Point]) -> list[tuple[int, str, float | None]]:
    return [(p.ts_ms, p.metric, p.value) for p in points]


@pytest.mark.parametrize("metrics", [None, ["pm2_5_ug_m3"], ["heater_on", "no2_ug_m3"]])
async def test_raw_query(store: TelemetryStore, metrics: list[str] | None) -> None:
    """Raw points of one device in [start, end), by time then metric, bools as 1/0."""
    data = _dataset()
    await store.write(data)
    query = TelemetryQuery("air_quality", "aq-1", BASE + 10 * MINUTE, BASE + 100 * MINUTE, metrics)
    got = _as_tuples(await store.query(query))
    assert got == _expected(data, query)
    assert got


async def test_raw_query_limit(store: TelemetryStore) -> None:
    """limit caps the number of points returned, keeping the earliest."""
    data = _dataset()
    await store.write(data)
    query = TelemetryQuery(
        "air_quality", "aq-1", BASE, BASE + 3 * 3_600_000, ["pm2_5_ug_m3"], limit=5
    )
    got = _as_tuples(await store.query(query))
    assert got == _expected(data, query)
    assert len(got) == 5


@pytest.mark.parametrize("agg", AGGREGATES)
@pytest.mark.parametrize("every_ms", [15 * MINUTE, 3_600_000])
async def test_aggregated_query(store: TelemetryStore, agg: str, every_ms: int) -> None:
    """Epoch-aligned buckets: mean/min/max of numbers, last/count of all; no empty buckets."""
    data = _dataset()
    await store.write(data)
    query = TelemetryQuery(
        "air_quality",
        "aq-1",
        BASE + 5 * MINUTE,
        BASE + 110 * MINUTE,
        None,
        every_ms,
        agg,  # type: ignore[arg-type]
    )
    got = _as_tuples(await store.query(query))
    want = _expected(data, query)
    assert [(t, m) for t, m, _ in got] == [(t, m) for t, m, _ in want]
    for (_, _, g), (_, _, w) in zip(got, want, strict=True):
        assert g == pytest.approx(w, rel=1e-12)


async def test_descending_raw_query_keeps_the_newest(store: TelemetryStore) -> None:
    """descending: newest first, and limit keeps the newest points (open data's latest page)."""
    data = _dataset()
    await store.write(data)
    query = TelemetryQuery(
        "air_quality", "aq-1", BASE, BASE + 3 * 3_600_000, ["pm2_5_ug_m3"], limit=5
    )
    newest_first = _as_tuples(
        await store.query(
            TelemetryQuery(
                "air_quality",
                "aq-1",
                BASE,
                BASE + 3 * 3_600_000,
                ["pm2_5_ug_m3"],
                limit=5,
                descending=True,
            )
        )
    )
    everything = _expected(data, dataclasses.replace(query, limit=10_000))
    assert newest_first == list(reversed(everything))[:5]
    assert [t for t, _, _ in newest_first] == sorted((t for t, _, _ in newest_first), reverse=True)


async def test_limit_counts_readings_that_carry_the_metric(store: TelemetryStore) -> None:
    """With metrics named, the limit counts readings that carry one of them (readings of a
    device's other metrics in between do not use it up): a page of one metric is full."""
    mixed = []
    for i in range(30):
        metrics: dict[str, MetricValue] = (
            {"pm2_5_ug_m3": float(i)} if i % 3 == 0 else {"no2_ug_m3": float(i)}
        )
        mixed.append(Reading("d02", "air_quality", "aq-9", BASE + i * MINUTE, metrics))
    await store.write(mixed)
    query = TelemetryQuery("air_quality", "aq-9", BASE, BASE + 3_600_000, ["pm2_5_ug_m3"], limit=5)
    got = _as_tuples(await store.query(query))
    assert got == [(BASE + i * MINUTE, "pm2_5_ug_m3", float(i)) for i in (0, 3, 6, 9, 12)]


def _area_dataset() -> list[Reading]:
    """Three districts' flood gauges over two hours, with a flagged value and a bool metric."""
    rng = random.Random(11)
    out = []
    for device in range(7):
        district = f"d0{device % 3}"
        for minute in range(0, 120, 5):
            if device == 6 and minute >= 60:
                break  # reports in the first hour only
            level = round(rng.uniform(0, 5), 3)
            flagged = device == 2 and minute == 10
            out.append(
                Reading(
                    district,
                    "flood_gauge",
                    f"fg-{device}",
                    BASE + minute * MINUTE + device,
                    {
                        "water_level_m": 99.0 if flagged else level,
                        "pump_on": minute % 15 == 0,
                        "battery_v": 3.6,
                    },
                    quality="out_of_range" if flagged else "ok",
                    out_of_range=("water_level_m",) if flagged else (),
                )
            )
    out.append(Reading("d00", "bridge", "br-1", BASE, {"water_level_m": 1000.0}))
    return out


def _area_expected(
    readings: list[Reading], metrics: list[str], start: int, end: int, every: int
) -> dict[tuple[str, int, str], tuple[int, int, float, float, float]]:
    cells: dict[tuple[str, int, str], list[Any]] = {}
    for r in readings:
        if r.asset_type != "flood_gauge" or not start <= r.ts_ms < end:
            continue
        for m in metrics:
            if m not in r.metrics or m in r.out_of_range:
                continue
            v = float(r.metrics[m])
            cell = cells.setdefault((r.district, r.ts_ms - r.ts_ms % every, m), [set(), []])
            cell[0].add(r.device_id)
            cell[1].append(v)
    return {
        key: (len(devices), len(values), sum(values), min(values), max(values))
        for key, (devices, values) in cells.items()
    }


@pytest.mark.parametrize("every_ms", [15 * MINUTE, 3_600_000, 86_400_000])
async def test_area_aggregate(store: TelemetryStore, every_ms: int) -> None:
    """Per district, bucket and metric across an asset type: devices, readings, sum, min, max;
    values flagged out of range are left out; bools count as 1/0; other asset types apart."""
    data = _area_dataset()
    await store.write(data)
    metrics = ["water_level_m", "pump_on", "no_such_metric"]
    start, end = BASE, BASE + 2 * 3_600_000
    cells = await store.area_aggregate(AreaQuery("flood_gauge", metrics, start, end, every_ms))
    got = {
        (c.district, c.bucket_ms, c.metric): (c.devices, c.readings, c.total, c.min, c.max)
        for c in cells
    }
    want = _area_expected(data, metrics, start, end, every_ms)
    assert set(got) == set(want)
    for key, (devices, readings, total, low, high) in want.items():
        g = got[key]
        assert g[:2] == (devices, readings), key
        assert g[2:] == pytest.approx((total, low, high), rel=1e-9), key
    assert all(c.max < 99.0 for c in cells if c.metric == "water_level_m")
    hourly = await store.area_aggregate(
        AreaQuery("flood_gauge", ["water_level_m"], start, end, 3_600_000)
    )
    d00 = {c.bucket_ms: c.devices for c in hourly if c.district == "d00"}
    assert d00 == {BASE: 3, BASE + 3_600_000: 2}  # fg-6 reported only in the first hour


async def test_area_aggregate_of_nothing_is_empty(store: TelemetryStore) -> None:
    """An unknown asset type, a range without data or no metrics: no cells, no error."""
    await store.write(_area_dataset())
    for query in (
        AreaQuery("no_such_type", ["water_level_m"], BASE, BASE + 3_600_000, 3_600_000),
        AreaQuery("flood_gauge", ["water_level_m"], BASE - 10**7, BASE, 3_600_000),
        AreaQuery("flood_gauge", [], BASE, BASE + 3_600_000, 3_600_000),
    ):
        assert await store.area_aggregate(query) == []


async def test_query_of_unknown_device_is_empty(store: TelemetryStore) -> None:
    """A device or asset type with no data answers no points, not an error."""
    await store.write(_dataset())
    assert await store.query(TelemetryQuery("air_quality", "nobody", BASE, BASE + 10**8)) == []
    assert (
        await store.query(
            TelemetryQuery("no_such_type", "x", BASE, BASE + 10**8, None, MINUTE, "mean")
        )
        == []
    )


async def test_history_is_in_time_order_and_filtered(store: TelemetryStore) -> None:
    """history streams [start, end) by time, ties by asset type/district/device, any write order."""
    rng = random.Random(3)
    readings = []
    for i in range(300):
        kind = rng.choice(["bridge", "flood_gauge", "manhole"])
        district = rng.choice(["d01", "d02"])
        # A device lives in one district, as in the field.
        device = f"{kind}-{district}-{rng.randrange(3)}"
        ts = BASE + rng.randrange(0, 50) * 1000
        readings.append(Reading(district, kind, device, ts, {"v": float(i)}))
    rng.shuffle(readings)
    unique = {(r.asset_type, r.device_id, r.ts_ms): r for r in readings}  # same key: last wins
    for i in range(0, len(readings), 37):
        await store.write(readings[i : i + 37])
    start, end = BASE + 10_000, BASE + 40_000
    got = await _history(store, start, end)
    want = sorted(
        (_stored(r) for r in unique.values() if start <= r.ts_ms < end),
        key=lambda r: (r.ts_ms, r.asset_type, r.district, r.device_id),
    )
    assert [(r.ts_ms, r.asset_type, r.district, r.device_id) for r in got] == [
        (r.ts_ms, r.asset_type, r.district, r.device_id) for r in want
    ]
    only = [r async for r in store.history(start, end, ["manhole"])]
    assert only
    assert {r.asset_type for r in only} == {"manhole"}
    assert only == [r for r in got if r.asset_type == "manhole"]
