"""A simulated fleet over March 2026 in Paris (DST on the 29th) with known gaps, an
outage, a backfill, a maintenance silence, an offline spell and duplicates: every
data-quality and domain indicator, per day, week and month, equals the value
computed here by hand from the fleet's known history; a rebuild from the stored
history equals the incremental result.

The oracle below works from the raw deliveries with the documented definitions
(docs/indicators.md) and plain ``zoneinfo`` arithmetic, not from the roll-ups.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from hub.catalog import load_catalog
from hub.clock import FakeClock
from hub.indicators.definitions import IndicatorDefinition, load_definitions
from hub.indicators.fleet import interval_ms_of
from hub.indicators.periods import CityCalendar
from hub.indicators.rebuild import rebuild
from hub.indicators.service import IndicatorService
from hub.indicators.sqlite_store import SqliteIndicatorStore
from hub.indicators.store import DELAY_EDGES_S
from hub.indicators.updater import DomainPlan, IndicatorUpdater
from hub.messages import Reading, Rejection, StatusUpdate
from hub.ports import UNRESTRICTED, IndicatorQuery, MaintenancePeriod, ResponseFact, Scope
from hub.store.embedded import EmbeddedStore

REPO = Path(__file__).resolve().parents[3]
PARIS = ZoneInfo("Europe/Paris")
CATALOG = load_catalog()
DEFS = load_definitions([REPO / "rules" / "indicators"], CATALOG).definitions
MIN = 60_000
HOUR = 3_600_000


def at(day: int, hour: int = 0, minute: int = 0, second: int = 0, month: int = 3) -> int:
    """Epoch ms of a Paris local time in 2026."""
    return int(datetime(2026, month, day, hour, minute, second, tzinfo=PARIS).timestamp() * 1000)


START = at(1)
END = at(2, month=4)  # the clock's final "now"
MAINTENANCE = MaintenancePeriod({"source": "aq-1"}, at(20), at(20, 6), "silence:works")
OFFLINE = (at(22, 10), at(22, 11, 30))
BACKFILL = (at(5, 12), at(5, 14), at(7, 10))  # readings of [a, b) delivered at c
OUTAGE = (at(10, 8), at(10, 14))
FLOOD = (at(15, 10), at(15, 13))
FAILED_LAMPS = (at(12, 18), at(13))
PM_HIGH_DAYS = {5, 6, 29}


@dataclass
class Delivery:
    reading: Reading
    received_ms: int


@dataclass
class Fleet:
    deliveries: list[Delivery] = field(default_factory=list)
    statuses: list[StatusUpdate] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)


def simulate() -> Fleet:
    """The fleet's month: what each device sent and when it arrived."""
    rnd = random.Random(13)
    fleet = Fleet()
    delays = (300, 300, 300, 1500, 1500, 4000, 20_000)

    def send(r: Reading, received: int) -> None:
        fleet.deliveries.append(Delivery(r, received))

    # fg-1: 3 % lost in transit (seq still counts), a 6 h outage (nothing sent),
    # two hours held back by the gateway and backfilled two days later, a flood.
    seq = 0
    for t in range(START, END, MIN):
        if OUTAGE[0] <= t < OUTAGE[1]:
            continue
        seq += 1
        ts = t + 7_000
        level = 2.6 if FLOOD[0] <= t < FLOOD[1] else 1.0
        r = Reading("d01", "flood_gauge", "fg-1", ts, {"water_level_m": level}, seq=seq)
        if rnd.random() < 0.03:
            continue
        received = (
            BACKFILL[2] + (t - BACKFILL[0]) // 100
            if BACKFILL[0] <= t < BACKFILL[1]
            else ts + rnd.choice(delays)
        )
        send(r, received)
    # fg-2: commissioned mid-month by its first reading; every 100th delivered twice.
    for seq, t in enumerate(range(at(15, 12, 34), END, MIN), start=1):
        ts = t + 20_000
        r = Reading("d01", "flood_gauge", "fg-2", ts, {"water_level_m": 0.5}, seq=seq)
        send(r, ts + 300)
        if seq % 100 == 0:
            send(r, ts + 2_300)
    # aq-1: silent during its maintenance and while offline; high PM2.5 on some days.
    for t in range(START, END, MIN):
        if MAINTENANCE.starts_ms <= t < MAINTENANCE.ends_ms or OFFLINE[0] <= t < OFFLINE[1]:
            continue
        day = datetime.fromtimestamp(t / 1000, PARIS).day
        pm = 20.0 if day in PM_HIGH_DAYS else 8.0
        send(Reading("d02", "air_quality", "aq-1", t + 1_000, {"pm2_5_ug_m3": pm}), t + 1_500)
    fleet.statuses += [
        StatusUpdate("d02", "air_quality", "aq-1", "offline", OFFLINE[0], received_ms=OFFLINE[0]),
        StatusUpdate("d02", "air_quality", "aq-1", "online", OFFLINE[1], received_ms=OFFLINE[1]),
    ]
    # sl-1: every 5 min; lamp on at night; its lamp failed on the evening of the 12th.
    for t in range(START, END, 5 * MIN):
        hour = datetime.fromtimestamp(t / 1000, PARIS).hour
        on = hour >= 18 or hour < 6
        power = (1.0 if FAILED_LAMPS[0] <= t < FAILED_LAMPS[1] else 60.0) if on else 0.0
        m = {"lamp_on": on, "power_w": power, "voltage_v": 230.0}
        send(Reading("d02", "streetlight", "sl-1", t + 2_000, m), t + 2_500)
    # tc-1: ten vehicles a minute, every minute but a 3 % loss.
    for t in range(START, END, MIN):
        if rnd.random() < 0.03:
            continue
        send(Reading("d03", "traffic_counter", "tc-1", t, {"vehicles_per_min": 10}), t + 800)
    # ten bad messages of d01's gauges on the 3rd
    fleet.rejections += [
        Rejection(
            "city/d01/flood_gauge/fg-1/telemetry",
            "bad_metric",
            "x",
            b"{}",
            at(3, 9, i),
            "fg-1",
            "d01",
        )
        for i in range(10)
    ]
    fleet.deliveries.sort(key=lambda d: d.received_ms)
    return fleet


FLEET = simulate()


# ---------------------------------------------------------------------- the hub's side


class Responses:
    """The maintenance the alert manager would report (no alerts in this fleet)."""

    def maintenance_periods(self, start_ms: int, end_ms: int) -> list[MaintenancePeriod]:
        return [p for p in (MAINTENANCE,) if p.starts_ms < end_ms and p.ends_ms > start_ms]

    def response_facts(self, start_ms: int, end_ms: int, scope: Scope) -> list[ResponseFact]:
        return []


@dataclass
class Hub:
    clock: FakeClock
    store: SqliteIndicatorStore
    updater: IndicatorUpdater
    service: IndicatorService


def make_hub(path: Path) -> Hub:
    clock = FakeClock(START)
    store = SqliteIndicatorStore(path)
    intervals = interval_ms_of(CATALOG.expected_interval_s)
    updater = IndicatorUpdater(
        store,
        CityCalendar("Europe/Paris"),
        intervals=intervals,
        clock=clock,
        definitions=DEFS.values(),
        maintenance=Responses().maintenance_periods,
    )
    service = IndicatorService(
        store,
        CityCalendar("Europe/Paris"),
        DEFS.values(),
        intervals=intervals,
        clock=clock,
        responses=Responses(),
        devices=lambda: list(updater.devices.values()),
    )
    return Hub(clock, store, updater, service)


STEP = 15 * MIN


def run_live(hub: Hub, until_ms: int, fleet: Fleet = FLEET, *, since_ms: int = START) -> None:
    """Feed what arrived in ``[since_ms, until_ms)`` in 15-minute batches, flushing after
    each as the live checkpoint does (the hours in progress saved every 5 minutes), and
    everything at the end as a stopping hub does."""
    events: list[tuple[int, object]] = [(d.received_ms, d) for d in fleet.deliveries]
    events += [(s.received_ms, s) for s in fleet.statuses]
    events += [(r.received_ms, r) for r in fleet.rejections]
    events.sort(key=lambda e: e[0])
    i = 0
    while i < len(events) and events[i][0] < since_ms:
        i += 1
    t = since_ms
    while t < until_ms:
        nxt = min(t + STEP, until_ms)
        readings, statuses, rejections = [], [], []
        while i < len(events) and events[i][0] < nxt:
            item = events[i][1]
            if isinstance(item, Delivery):
                r = item.reading
                readings.append(
                    Reading(
                        r.district,
                        r.asset_type,
                        r.device_id,
                        r.ts_ms,
                        r.metrics,
                        r.seq,
                        item.received_ms,
                    )
                )
            elif isinstance(item, StatusUpdate):
                statuses.append(item)
            else:
                rejections.append(item)  # type: ignore[arg-type]
            i += 1
        hub.clock.set_ms(nxt)
        hub.updater.observe(readings, statuses, rejections)
        hub.updater.flush_now(save_open=False)
        t = nxt
    hub.updater.flush_now(stopping=True)


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Hub:
    """The hub after the whole month, fed live."""
    h = make_hub(tmp_path_factory.mktemp("fleet") / "hub.db")
    run_live(h, END)
    return h


# ---------------------------------------------------------------------- the oracle


INTERVAL = {"flood_gauge": MIN, "air_quality": MIN, "streetlight": 5 * MIN, "traffic_counter": MIN}


def periods(kind: str) -> list[tuple[int, int]]:
    """Local days, ISO weeks and months overlapping March 1 - April 2, by zoneinfo."""
    out = []
    d = datetime(2026, 3, 1, tzinfo=PARIS)
    if kind == "week":
        d -= timedelta(days=d.weekday())
    while d.timestamp() * 1000 < END:
        if kind == "day":
            n = d + timedelta(days=1)
        elif kind == "week":
            n = d + timedelta(days=7)
        else:
            n = (d.replace(day=28) + timedelta(days=4)).replace(day=1)
        out.append((int(d.timestamp() * 1000), int(n.timestamp() * 1000)))
        d = n
    return out


class Oracle:
    """The indicators computed slot by slot from the known deliveries."""

    def __init__(self, fleet: Fleet, now: int = END) -> None:
        self.now = now
        self.by_device: dict[str, list[Delivery]] = {}
        for d in fleet.deliveries:
            if d.received_ms < now:
                self.by_device.setdefault(d.reading.device_id, []).append(d)
        self.fleet = fleet
        self.slots: dict[str, set[int]] = {}
        self.where: dict[str, tuple[str, str]] = {}
        for dev, ds in self.by_device.items():
            iv = INTERVAL[ds[0].reading.asset_type]
            self.slots[dev] = {d.reading.ts_ms - d.reading.ts_ms % iv for d in ds}
            self.where[dev] = (ds[0].reading.district, ds[0].reading.asset_type)

    def _expected_slots(self, dev: str, lo: int, hi: int) -> list[int]:
        iv = INTERVAL[self.where[dev][1]]
        first = min(self.slots[dev])
        out = []
        s = max(lo, first)
        s += (-s) % iv
        while s < min(hi, self.now + 1):
            if not (dev == "aq-1" and MAINTENANCE.starts_ms <= s < MAINTENANCE.ends_ms):
                out.append(s)
            s += iv
        return out

    def _offline(self, dev: str, s: int) -> bool:
        state = "online"
        for st in self.fleet.statuses:
            if st.device_id == dev and st.ts_ms <= s:
                state = st.state
        return state == "offline"

    def completeness(self, district: str, lo: int, hi: int) -> tuple[int, int]:
        num = den = 0
        for dev, (d, _) in self.where.items():
            if d != district:
                continue
            exp = self._expected_slots(dev, lo, hi)
            den += len(exp)
            num += sum(1 for s in exp if s in self.slots[dev])
        return num, den

    def availability(self, district: str, lo: int, hi: int) -> tuple[int, int]:
        num = den = 0
        for dev, (d, asset) in self.where.items():
            if d != district:
                continue
            iv = INTERVAL[asset]
            exp = self._expected_slots(dev, lo, hi)
            den += len(exp)
            num += sum(
                1
                for s in exp
                if any(s - k * iv in self.slots[dev] for k in range(3))
                and not self._offline(dev, s)
            )
        return num, den

    def seq_loss(self, district: str, lo: int, hi: int) -> tuple[int, int]:
        lost = n = 0
        for dev, (d, _) in self.where.items():
            if d != district:
                continue
            seen = sorted(
                {
                    (x.reading.ts_ms, x.reading.seq)
                    for x in self.by_device[dev]
                    if x.reading.seq is not None
                }
            )
            prev = None
            for ts, seq in seen:
                if lo <= ts < hi:
                    n += 1
                    if prev is not None and 0 < seq - prev - 1 <= 1024:
                        lost += seq - prev - 1
                prev = seq
        return lost, n + lost

    def delay_p95(self, district: str, lo: int, hi: int) -> float | None:
        delays = sorted(
            d.received_ms - d.reading.ts_ms
            for ds in self.by_device.values()
            for d in ds
            if d.reading.district == district and lo <= d.reading.ts_ms < hi
        )
        if not delays:
            return None
        v = delays[max(1, math.ceil(0.95 * len(delays))) - 1] / 1000
        return float(next((e for e in DELAY_EDGES_S if v <= e), DELAY_EDGES_S[-1]))

    def rejection_rate(self, district: str, lo: int, hi: int) -> tuple[int, int]:
        rejected = sum(
            1 for r in self.fleet.rejections if r.district == district and lo <= r.received_ms < hi
        )
        accepted = sum(
            1
            for ds in self.by_device.values()
            for d in ds
            if d.reading.district == district and lo <= d.received_ms < hi
        )
        return rejected, accepted + rejected

    def _first_per_slot(self, dev: str) -> dict[int, Reading]:
        iv = INTERVAL[self.where[dev][1]]
        out: dict[int, Reading] = {}
        for d in self.by_device[dev]:
            out.setdefault(d.reading.ts_ms - d.reading.ts_ms % iv, d.reading)
        return out

    def pm25_days(self, district: str, lo: int, hi: int) -> int | None:
        days = 0
        found = False
        for day_lo, day_hi in periods("day"):
            if not lo <= day_lo < hi:
                continue
            values = [
                r.metrics["pm2_5_ug_m3"]
                for dev, (d, a) in self.where.items()
                if d == district and a == "air_quality"
                for s, r in self._first_per_slot(dev).items()
                if day_lo <= r.ts_ms < day_hi
            ]
            if values:
                found = True
                days += sum(values) / len(values) > 15
        return days if found else None

    def _hours(self, dev: str) -> dict[int, list[Reading]]:
        out: dict[int, list[Reading]] = {}
        for s, r in self._first_per_slot(dev).items():
            out.setdefault(s - s % HOUR, []).append(r)  # Paris hours are whole UTC hours
        return out

    def flood_hours(self, district: str, lo: int, hi: int) -> int:
        return sum(
            1
            for dev, (d, a) in self.where.items()
            if d == district and a == "flood_gauge"
            for h, rs in self._hours(dev).items()
            if lo <= h < hi and max(r.metrics["water_level_m"] for r in rs) > 2.5
        )

    def lamps(self, district: str, lo: int, hi: int) -> tuple[int, int]:
        counted = ok = 0
        for dev, (d, a) in self.where.items():
            if d != district or a != "streetlight":
                continue
            for h, rs in self._hours(dev).items():
                on = [r for r in rs if r.metrics["lamp_on"] is True]
                if lo <= h < hi and on:
                    counted += 1
                    ok += all(r.metrics["power_w"] >= 5 for r in on)
        return ok, counted

    def traffic(self, district: str, lo: int, hi: int) -> tuple[float, int]:
        total = sum(
            r.metrics["vehicles_per_min"]
            for dev, (d, a) in self.where.items()
            if d == district and a == "traffic_counter"
            for r in self._first_per_slot(dev).values()
            if lo <= r.ts_ms < hi
        )
        days = len(
            {
                datetime.fromtimestamp(r.ts_ms / 1000, PARIS).date()
                for dev, (d, a) in self.where.items()
                if d == district and a == "traffic_counter"
                for r in self._first_per_slot(dev).values()
                if lo <= r.ts_ms < hi
            }
        )
        return float(total), days


ORACLE = Oracle(FLEET)
DISTRICTS = ("d01", "d02", "d03")


def pct(num: float, den: float) -> float | None:
    return 100 * num / den if den else None


def expected_point(
    indicator: str, district: str, lo: int, hi: int, oracle: Oracle = ORACLE
) -> tuple[float | None, float | None, float | None] | None:
    """(value, numerator, denominator) by hand; None when the district has no such point."""
    o = oracle

    def ratio(nd: tuple[float, float]) -> tuple[float | None, float, float]:
        return pct(*nd), nd[0], nd[1]

    if indicator == "data_completeness_pct":
        return ratio(o.completeness(district, lo, hi))
    if indicator == "device_availability_pct":
        return ratio(o.availability(district, lo, hi))
    if indicator == "seq_loss_pct":
        return ratio(o.seq_loss(district, lo, hi))
    if indicator == "reading_delay_p95_s":
        return o.delay_p95(district, lo, hi), None, None
    if indicator == "rejection_rate_pct":
        return ratio(o.rejection_rate(district, lo, hi))
    if indicator == "pm25_days_above_who_2021":
        days = o.pm25_days(district, lo, hi)
        return None if days is None else (float(days), None, None)
    if indicator == "flood_warning_hours":
        return float(o.flood_hours(district, lo, hi)), None, None
    if indicator == "streetlights_working_pct":
        return ratio(o.lamps(district, lo, hi))
    if indicator == "traffic_volume_per_day":
        if not any(w == (district, "traffic_counter") for w in o.where.values()):
            return None
        total, days = o.traffic(district, lo, hi)
        return (total / days if days else None), total, days
    raise AssertionError(indicator)


TELEMETRY = [
    "data_completeness_pct",
    "device_availability_pct",
    "seq_loss_pct",
    "reading_delay_p95_s",
    "rejection_rate_pct",
    "pm25_days_above_who_2021",
    "flood_warning_hours",
    "streetlights_working_pct",
    "traffic_volume_per_day",
]


def points(
    service: IndicatorService, indicator: str, period: str, scope: Scope = UNRESTRICTED
) -> dict[tuple[int, str | None], tuple[float | None, float | None, float | None]]:
    q = IndicatorQuery(indicator, period, START, END)  # type: ignore[arg-type]
    return {
        (p.period_start_ms, p.district): (p.value, p.numerator, p.denominator)
        for p in service.series(q, scope)
    }


def close(a: tuple[float | None, ...], b: tuple[float | None, ...]) -> bool:
    return all(
        (x is None and y is None)
        or (x is not None and y is not None and math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-9))
        for x, y in zip(a, b, strict=True)
    )


# ---------------------------------------------------------------------- tests


@pytest.mark.parametrize("period", ["day", "week", "month"])
@pytest.mark.parametrize("indicator", TELEMETRY)
def test_every_indicator_equals_the_hand_computed_value(
    hub: Hub, indicator: str, period: str
) -> None:
    """Each district's value, numerator and denominator per local day, ISO week and month
    (March spans the DST change) equal the oracle's."""
    got = points(hub.service, indicator, period)
    for lo, hi in periods(period):
        for district in DISTRICTS:
            want = expected_point(indicator, district, lo, hi)
            have = got.get((lo, district))
            if have is None:
                # no point: nothing to count for that district (the oracle agrees)
                assert want is None or (want[0] in (None, 0.0) and not want[2]), (
                    indicator,
                    period,
                    lo,
                    district,
                    want,
                )
                continue
            assert want is not None, (indicator, period, lo, district, have)
            assert close(have, want), (
                indicator,
                period,
                lo,
                district,
                have,
                want,
            )


def test_the_month_across_dst_is_an_hour_short(hub: Hub) -> None:
    """March in Paris is 743 hours: d02's devices were expected in every slot of them but
    aq-1's maintenance."""
    got = points(hub.service, "data_completeness_pct", "month")
    _, _, den = got[(START, "d02")]
    aq_expected = 743 * 60 - 6 * 60  # minutes of March less the 6 h maintenance
    sl_expected = 743 * 12
    assert den == aq_expected + sl_expected


def test_maintenance_is_not_expected_of_the_device(hub: Hub) -> None:
    """The day of aq-1's 6 h maintenance expects 18 h of its readings, and it has them all."""
    q = IndicatorQuery(
        "data_completeness_pct", "day", at(20), at(21), district="d02", asset_type="air_quality"
    )
    [device] = hub.service.devices(q, UNRESTRICTED, 10)
    assert (device.device_id, device.numerator, device.denominator) == ("aq-1", 18 * 60, 18 * 60)
    assert device.value == 100.0


def test_offline_status_takes_availability_down_beyond_the_grace(hub: Hub) -> None:
    """aq-1 said it went offline at 10:00: not up for 90 min though its 09:59 reading would
    otherwise cover two more slots."""
    q = IndicatorQuery(
        "device_availability_pct", "day", at(22), at(23), district="d02", asset_type="air_quality"
    )
    [device] = hub.service.devices(q, UNRESTRICTED, 10)
    assert (device.numerator, device.denominator) == (24 * 60 - 90, 24 * 60)


def test_late_data_corrects_its_period(tmp_path: Path) -> None:
    """Before the backfill of the 5th arrives (on the 7th) the 5th misses two hours of fg-1;
    once it lands, the 5th is complete as the oracle says, and no other day changed."""
    h = make_hub(tmp_path / "hub.db")
    run_live(h, at(7, 9))
    q = IndicatorQuery("data_completeness_pct", "day", at(5), at(6), district="d01")
    [before] = h.service.series(q, UNRESTRICTED)
    other = h.service.series(
        IndicatorQuery("data_completeness_pct", "day", at(4), at(5)), UNRESTRICTED
    )
    run_live(h, at(7, 12), since_ms=at(7, 9))
    [after] = h.service.series(q, UNRESTRICTED)
    assert after.numerator is not None
    assert before.numerator is not None
    assert after.numerator - before.numerator == len(
        [
            d
            for d in FLEET.deliveries
            if d.reading.device_id == "fg-1" and BACKFILL[0] <= d.reading.ts_ms < BACKFILL[1]
        ]
    )
    oracle = Oracle(FLEET, now=at(7, 12))
    assert (after.value, after.numerator, after.denominator) == expected_point(
        "data_completeness_pct", "d01", at(5), at(6), oracle
    )
    assert (
        h.service.series(IndicatorQuery("data_completeness_pct", "day", at(4), at(5)), UNRESTRICTED)
        == other
    )


def test_a_rebuild_equals_the_incremental_result(hub: Hub, tmp_path: Path) -> None:
    """Every reading put in the embedded store and the month rebuilt from its history
    gives back the same points and the same device-days."""
    before = {
        (i, p): points(hub.service, i, p) for i in TELEMETRY for p in ("day", "week", "month")
    }
    days_before = sorted(
        hub.store.device_days(START, END), key=lambda r: (r.device_id or "", r.day_ms)
    )

    async def run() -> None:
        telemetry = EmbeddedStore(tmp_path / "telemetry.db")
        await telemetry.open()
        try:
            await telemetry.write([d.reading for d in FLEET.deliveries])
            await rebuild(
                hub.store,
                telemetry.history(START, END),
                CityCalendar("Europe/Paris"),
                intervals=interval_ms_of(CATALOG.expected_interval_s),
                plan=DomainPlan.of(DEFS.values()),
                maintenance=Responses().maintenance_periods(START - 86_400_000, END),
                start_ms=START,
                end_ms=END,
                now_ms=hub.clock.now_ms(),
            )
        finally:
            await telemetry.close()

    asyncio.run(run())
    after = {(i, p): points(hub.service, i, p) for i in TELEMETRY for p in ("day", "week", "month")}
    assert after == before
    days_after = sorted(
        hub.store.device_days(START, END), key=lambda r: (r.device_id or "", r.day_ms)
    )
    assert [(r.device_id, r.day_ms, r.totals) for r in days_after] == [
        (r.device_id, r.day_ms, r.totals) for r in days_before
    ]


def test_a_scoped_key_sees_only_its_districts(hub: Hub) -> None:
    """A scope of d02 gives d02's points only, whatever the grouping asks."""
    scope = Scope(districts=frozenset({"d02"}))
    for by in ("district", "asset_type", "district_asset_type", "city"):
        q = IndicatorQuery("data_completeness_pct", "month", START, END, by=by)  # type: ignore[arg-type]
        pts = hub.service.series(q, scope)
        assert pts, by
        assert all(p.district in (None, "d02") for p in pts)
        assert all(p.asset_type in (None, "air_quality", "streetlight") for p in pts)
    d02 = ORACLE.completeness("d02", START, at(1, month=4))
    city = hub.service.series(
        IndicatorQuery("data_completeness_pct", "month", START, at(1, month=4), by="city"), scope
    )
    assert (city[0].numerator, city[0].denominator) == d02
    q = IndicatorQuery("data_completeness_pct", "month", START, END)
    assert {f.district for f in hub.service.devices(q, scope, 100)} == {"d02"}


def definitions_by_source(source: str) -> Iterable[IndicatorDefinition]:
    return (d for d in DEFS.values() if d.source == source)


def day_sums_from_hours(
    store: SqliteIndicatorStore,
) -> dict[tuple[str, int], tuple[int, int, int, int]]:
    """Device-day sums recomputed from the stored device-hours."""
    out: dict[tuple[str, int], list[int]] = {}
    for row in store.hours(0, 2**62):
        f = row.figures
        acc = out.setdefault((row.state.device_id, row.state.day_ms), [0, 0, 0, 0])
        for i, v in enumerate((f.received, f.up, f.seq_n, f.seq_lost)):
            acc[i] += v
    return {k: (a, b, c, d) for k, (a, b, c, d) in out.items() if any((a, b, c, d))}


def stored_day_sums(
    store: SqliteIndicatorStore,
) -> dict[tuple[str, int], tuple[int, int, int, int]]:
    return {
        (r.device_id or "", r.day_ms): (
            r.totals.received,
            r.totals.up,
            r.totals.seq_n,
            r.totals.seq_lost,
        )
        for r in store.device_days(0, 2**62)
        if any((r.totals.received, r.totals.up, r.totals.seq_n, r.totals.seq_lost))
    }


def test_day_sums_always_equal_their_hours(hub: Hub) -> None:
    """After a month of incremental deltas (late data, re-derived successors, saves of
    hours in progress), every device-day is the sum of its stored hours."""
    assert stored_day_sums(hub.store) == day_sums_from_hours(hub.store)


def test_a_rebuild_while_the_updater_runs_keeps_the_sums_right(tmp_path: Path) -> None:
    """The updater keeps what it wrote in memory; a rebuild's write in between makes it
    read the store again, so its next deltas are against what is there now."""
    h = make_hub(tmp_path / "hub.db")
    run_live(h, at(1, 3))
    fg = [
        d.reading
        for d in FLEET.deliveries
        if d.reading.device_id == "fg-1" and d.reading.ts_ms < at(1, 3)
    ]

    async def rebuild_first_hours() -> None:
        async def history():  # type: ignore[no-untyped-def]
            for r in fg[:30]:  # the store had only half an hour of fg-1
                yield r

        await rebuild(
            h.store,
            history(),
            CityCalendar("Europe/Paris"),
            intervals=interval_ms_of(CATALOG.expected_interval_s),
            plan=DomainPlan.of(DEFS.values()),
            maintenance=[],
            start_ms=at(1, 2),
            end_ms=at(1, 3),
            now_ms=h.clock.now_ms(),
        )

    asyncio.run(rebuild_first_hours())
    late = [r for r in fg if at(1, 2) <= r.ts_ms < at(1, 3)]
    h.clock.set_ms(at(1, 3, 5))
    h.updater.observe(late)  # the hour 02:00 is still in the updater's memory
    h.updater.flush_now(save_open=False)
    assert stored_day_sums(h.store) == day_sums_from_hours(h.store)


def test_a_crash_is_noticed_with_the_span_to_rebuild(tmp_path: Path) -> None:
    """Without a clean stop, the next start names the readings that may be missing."""
    h = make_hub(tmp_path / "hub.db")
    run_live(h, at(1, 1))  # ends with a clean stop
    assert make_hub(tmp_path / "hub.db").updater.unsaved is None
    h.clock.set_ms(at(1, 1, 3))
    h.updater.observe(
        [d.reading for d in FLEET.deliveries if at(1, 1) <= d.received_ms < at(1, 1, 3)]
    )
    h.updater.flush_now(save_open=False)  # a checkpoint, then the process dies
    again = make_hub(tmp_path / "hub.db")
    assert again.updater.unsaved == (at(1, 1), at(1, 1, 3))
