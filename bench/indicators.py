"""Indicator benchmark (issue 13): queries, incremental upkeep, rebuild.

10,000 devices in 50 districts (the catalog's seven asset types), 30 days. 430
million readings are too many for this machine, so the history is generated at
roll-up level: district-days, device-days and expected slots of closed days written
straight into the state database, and 20,000 alerts into the alert tables. Then:

* **query**: every shipped indicator, a month (30 days, ``period=day``) for all
  districts, through the same service the API uses; the median of ``--runs``
  (target < 200 ms each). Telemetry indicators compute the current day's expected
  slots live over all 10,000 devices; response indicators read the month's alerts.
* **upkeep**: the live updater at the fleet's rate (one reading per device a minute),
  ``--minutes`` of readings fed in journal-sized batches with a flush every 15 s of
  their time, as the live stage does: CPU per reading of ``observe`` and of the
  flushes (in the hub they run in a worker thread, but they still cost CPU), against
  the hub's ingest CPU per reading (``--ingest-us``: bench/ingest.py's figure,
  docs/performance.md; target: upkeep ≤ 5 % of it).
* **rebuild**: ``hub indicators rebuild`` on ``--rebuild-devices`` devices over
  ``--rebuild-days`` days of readings from an in-memory history (the store's read
  is measured by bench/ingest.py and the store contract, not here): readings/s and
  device-hours/s, extrapolated to 10,000 devices × 30 days (target < 10 min).

    python3 bench/indicators.py                          # full size
    python3 bench/indicators.py --devices 2000 --rebuild-devices 200 --minutes 5   # quick
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from hub.alerts.db import migrate_alerts  # noqa: E402
from hub.alerts.facts import AlertFacts  # noqa: E402
from hub.alerts.routing import load_routes  # noqa: E402
from hub.alerts.silences import SilenceBook  # noqa: E402
from hub.catalog import load_catalog  # noqa: E402
from hub.clock import FakeClock  # noqa: E402
from hub.indicators.definitions import load_definitions  # noqa: E402
from hub.indicators.fleet import interval_ms_of  # noqa: E402
from hub.indicators.periods import DAY_MS, CityCalendar  # noqa: E402
from hub.indicators.rebuild import rebuild  # noqa: E402
from hub.indicators.rollup import Totals  # noqa: E402
from hub.indicators.service import IndicatorService  # noqa: E402
from hub.indicators.sqlite_store import SqliteIndicatorStore  # noqa: E402
from hub.indicators.store import DELAY_BUCKETS, Arrivals, DeviceRecord  # noqa: E402
from hub.indicators.updater import DomainPlan, IndicatorUpdater  # noqa: E402
from hub.messages import Reading  # noqa: E402
from hub.ports import UNRESTRICTED, IndicatorQuery  # noqa: E402
from hub.sqlite import STATE_DB, connect  # noqa: E402

NOW = 1_767_225_600_000 + 30 * DAY_MS + 12 * 3_600_000  # 2026-01-31T12:00Z
DISTRICTS = [f"d{i:02d}" for i in range(1, 51)]
CATALOG = load_catalog()
ASSETS = CATALOG.asset_types()
DEFS = list(load_definitions([REPO / "rules" / "indicators"], CATALOG).definitions.values())
INTERVALS = interval_ms_of(CATALOG.expected_interval_s)

METRICS = {
    "air_quality": {
        "pm2_5_ug_m3": 9.0,
        "pm10_ug_m3": 20.0,
        "no2_ug_m3": 30.0,
        "temperature_c": 12.0,
        "humidity_pct": 60.0,
    },
    "bridge": {"strain_ue": 100.0, "vibration_mm_s": 2.0, "temperature_c": 10.0},
    "flood_gauge": {"water_level_m": 1.2, "rainfall_mm_h": 0.0, "battery_v": 3.7},
    "manhole": {"methane_pct_lel": 1.0, "h2s_ppm": 2.0, "water_level_m": 0.2, "battery_v": 3.6},
    "streetlight": {"power_w": 60.0, "voltage_v": 231.0, "lamp_on": True},
    "traffic_counter": {"vehicles_per_min": 12.0, "avg_speed_kmh": 40.0},
    "water_main": {"pressure_bar": 3.5, "flow_l_s": 20.0, "battery_v": 3.6},
}


def devices(n: int) -> list[DeviceRecord]:
    return [
        DeviceRecord(
            f"dev-{i:05d}",
            DISTRICTS[i % len(DISTRICTS)],
            ASSETS[i % len(ASSETS)],
            NOW - 40 * DAY_MS,
        )
        for i in range(n)
    ]


# ---------------------------------------------------------------------- query


def generate(data_dir: Path, n_devices: int, days: int, n_alerts: int) -> list[DeviceRecord]:
    """Roll-up-level history: what the updater would have written for the fleet."""
    cal = CityCalendar("UTC")
    devs = devices(n_devices)
    store = SqliteIndicatorStore(data_dir / STATE_DB)
    day_list = cal.days(NOW - days * DAY_MS, NOW)
    rnd = random.Random(1)
    with store.transaction() as txn:
        txn.put_devices(devs)
    for day in day_list:
        groups: dict[tuple[str, str], Totals] = {}
        per_device: dict[tuple[str, int], tuple[str, str, Totals]] = {}
        expected: dict[tuple[str, str], int] = {}
        for d in devs:
            iv = INTERVALS(d.asset_type) or 60_000
            slots = DAY_MS // iv
            got = slots - rnd.randint(0, slots // 20)
            t = Totals(received=got, up=min(slots, got + 3), seq_n=got, seq_lost=slots - got)
            if d.asset_type == "air_quality":
                t.domain = {"n": {"pm2_5_ug_m3": got}, "s": {"pm2_5_ug_m3": got * 9.0}}
            elif d.asset_type == "flood_gauge":
                t.domain = {
                    "n": {"water_level_m": got},
                    "s": {"water_level_m": got * 1.2},
                    "h": {"flood_warning_hours": rnd.randint(0, 1)},
                }
            elif d.asset_type == "streetlight":
                t.domain = {"c": {"streetlights_working_pct": [12, 12 - rnd.randint(0, 1)]}}
            elif d.asset_type == "traffic_counter":
                t.domain = {"n": {"vehicles_per_min": got}, "s": {"vehicles_per_min": got * 12.0}}
            per_device[(d.device_id, day)] = (d.district, d.asset_type, t)
            groups.setdefault((d.district, d.asset_type), Totals()).add(t)
            expected[(d.district, d.asset_type)] = (
                expected.get((d.district, d.asset_type), 0) + slots
            )
        arrivals = {}
        for (district, asset), t in groups.items():
            a = Arrivals(accepted=t.received, rejected={"bad_metric": rnd.randint(0, 5)})
            a.delays = [0] * DELAY_BUCKETS
            a.delays[1] = t.received * 9 // 10
            a.delays[3] = t.received - a.delays[1]
            arrivals[(district, asset, day)] = a
        with store.transaction() as txn:
            txn.add_days(per_device, {(d, a, day): t for (d, a), t in groups.items()})
            txn.add_arrivals(arrivals)
            if day + DAY_MS <= NOW:
                txn.put_expected(day, expected)
    store.close()
    conn = connect(data_dir / STATE_DB)
    migrate_alerts(conn)
    rows = []
    for i in range(n_alerts):
        started = NOW - days * DAY_MS + rnd.randint(0, days * DAY_MS - 1)
        d = devs[rnd.randrange(len(devs))]
        acked = started + rnd.randint(60_000, 3_600_000) if rnd.random() < 0.8 else None
        resolved = started + rnd.randint(120_000, 8 * 3_600_000) if rnd.random() < 0.9 else None
        rows.append(
            (
                f"{started:012x}{i:020x}",
                "pressure-low",
                "v1",
                "resolved" if resolved else "firing",
                rnd.randint(0, 3),
                d.district,
                d.asset_type,
                d.device_id,
                "s",
                "",
                "{}",
                "{}",
                started,
                started,
                acked,
                resolved,
                "other" if resolved and rnd.random() < 0.5 else None,
                "alice" if resolved else None,
            )
        )
    conn.executemany(
        "INSERT INTO alerts (id, rule_id, rule_version, status, severity, district, asset_type,"
        " source,"
        " summary, description, labels, explanation, started_ms, updated_ms, acknowledged_ms,"
        " resolved_ms, resolution, resolved_by)"
        f" VALUES ({', '.join('?' * 18)})",
        rows,
    )
    conn.close()
    return devs


def bench_queries(data_dir: Path, devs: list[DeviceRecord], runs: int) -> dict[str, float]:
    clock = FakeClock(NOW)
    store = SqliteIndicatorStore(data_dir / STATE_DB)
    conn = connect(data_dir / STATE_DB)
    routes = load_routes(REPO / "rules" / "routes.yaml")
    facts = AlertFacts(conn, routes, clock, SilenceBook(conn, routes.maintenance))
    service = IndicatorService(
        store,
        CityCalendar("UTC"),
        DEFS,
        intervals=INTERVALS,
        clock=clock,
        responses=facts,
        devices=lambda: devs,
    )
    out = {}
    for d in DEFS:
        q = IndicatorQuery(d.id, "day", NOW - 30 * DAY_MS, NOW)
        times = []
        for _ in range(runs):
            began = time.perf_counter()
            pts = service.series(q, UNRESTRICTED)
            times.append((time.perf_counter() - began) * 1000)
        out[d.id] = statistics.median(times)
        print(f"  {d.id:34} {out[d.id]:7.1f} ms  ({len(pts)} points)")
    store.close()
    conn.close()
    return out


# ---------------------------------------------------------------------- upkeep


def fleet_readings(devs: list[DeviceRecord], start: int, minutes: int) -> list[Reading]:
    """One reading per device a minute, spread over the minute, in arrival order."""
    out = []
    n = len(devs)
    seqs = [0] * n
    for m in range(minutes):
        for i, d in enumerate(devs):
            ts = start + m * 60_000 + (i * 60_000) // n
            seqs[i] += 1
            out.append(
                Reading(
                    d.district,
                    d.asset_type,
                    d.device_id,
                    ts,
                    METRICS[d.asset_type],
                    seq=seqs[i],
                    received_ms=ts + 300,
                )
            )
    return out


def bench_upkeep(data_dir: Path, devs: list[DeviceRecord], minutes: int, ingest_us: float) -> float:
    clock = FakeClock(NOW)
    store = SqliteIndicatorStore(data_dir / "upkeep.db")
    updater = IndicatorUpdater(
        store, CityCalendar("UTC"), intervals=INTERVALS, clock=clock, definitions=DEFS
    )
    readings = fleet_readings(devs, NOW, minutes)
    batch = max(1, len(devs) // 60)  # a second's worth of the fleet: one journal batch
    observe_s = flush_s = 0.0
    next_flush = NOW + 15_000
    flushes = 0
    for i in range(0, len(readings), batch):
        chunk = readings[i : i + batch]
        clock.set_ms(max(clock.now_ms(), chunk[-1].ts_ms + 1000))
        began = time.process_time()
        updater.observe(chunk)
        observe_s += time.process_time() - began
        if clock.now_ms() >= next_flush:
            began = time.process_time()
            updater.flush_now(save_open=False)  # the hours in progress: every save_interval
            flush_s += time.process_time() - began
            flushes += 1
            next_flush += 15_000
    store.close()
    per_observe = observe_s / len(readings) * 1e6
    per_flush = flush_s / len(readings) * 1e6
    share = (per_observe + per_flush) / ingest_us * 100
    print(
        f"  {len(readings):,} readings, {flushes} flushes: observe {per_observe:.2f} µs/reading,"
        f" flush {per_flush:.2f} µs/reading (in a worker thread in the hub)"
    )
    print(
        f"  upkeep {per_observe + per_flush:.2f} µs/reading = {share:.1f} % of {ingest_us} µs"
        " (target ≤ 5 %);"
        f" on the event loop: {per_observe / ingest_us * 100:.1f} %"
    )
    return share


# ---------------------------------------------------------------------- rebuild


async def _history(readings: list[Reading]) -> AsyncIterator[Reading]:
    for r in readings:
        yield r


def bench_rebuild(
    data_dir: Path, n_devices: int, days: int, full_devices: int, full_days: int
) -> float:
    devs = devices(n_devices)
    start = NOW - days * DAY_MS
    readings = sorted(fleet_readings(devs, start, days * 1440), key=lambda r: r.ts_ms)
    store = SqliteIndicatorStore(data_dir / "rebuild.db")
    began = time.perf_counter()
    report = asyncio.run(
        rebuild(
            store,
            _history(readings),
            CityCalendar("UTC"),
            intervals=INTERVALS,
            plan=DomainPlan.of(DEFS),
            maintenance=[],
            start_ms=start,
            end_ms=start + days * DAY_MS,
            now_ms=NOW + days * DAY_MS,
        )
    )
    took = time.perf_counter() - began
    store.close()
    scale = (full_devices * full_days) / (n_devices * days)
    print(
        f"  {report.readings:,} readings, {report.hours:,} device-hours in {took:.1f} s:"
        f" {report.readings / took:,.0f} readings/s, {report.hours / took:,.0f} device-hours/s"
    )
    print(
        f"  extrapolated to {full_devices:,} devices × {full_days} days:"
        f" {took * scale / 60:.1f} min (target < 10 min)"
    )
    return took * scale


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--devices", type=int, default=10_000)
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--alerts", type=int, default=20_000)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--minutes", type=int, default=60, help="minutes of live readings for upkeep")
    p.add_argument(
        "--ingest-us", type=float, default=28.0, help="hub CPU per reading (bench/ingest.py)"
    )
    p.add_argument("--rebuild-devices", type=int, default=500)
    p.add_argument("--rebuild-days", type=int, default=2)
    args = p.parse_args()
    print(
        f"indicators benchmark: {args.devices:,} devices, {args.days} days,"
        f" {len(DEFS)} indicators, pid {os.getpid()}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        began = time.perf_counter()
        devs = generate(data_dir, args.devices, args.days, args.alerts)
        print(f"generated roll-up history in {time.perf_counter() - began:.0f} s")
        print(
            f"query: a month (30 days) of each indicator for all districts, median of {args.runs}"
        )
        times = bench_queries(data_dir, devs, args.runs)
        worst = max(times, key=times.__getitem__)
        print(f"  slowest: {worst} {times[worst]:.1f} ms (target < 200 ms)")
        print(f"upkeep: {args.devices:,} devices at one reading a minute, {args.minutes} min")
        bench_upkeep(data_dir, devs, args.minutes, args.ingest_us)
        print(f"rebuild: {args.rebuild_devices} devices × {args.rebuild_days} days from history")
        bench_rebuild(data_dir, args.rebuild_devices, args.rebuild_days, args.devices, args.days)


if __name__ == "__main__":
    main()
