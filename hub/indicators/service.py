"""Indicator values from the stored roll-ups (CONTRACT §8): the API's port and the
report's source.

A query names an indicator, a period (local day, ISO week or month), a time range,
optional filters and a grouping; every value comes from district-day sums
(:mod:`hub.indicators.store`), expected slots cached per closed day (the current day
is computed for the moment of the question), arrival counts, or, for the response
indicators, the alerts opened in the range. Nothing scans raw telemetry.

Percentages are ``100 × numerator ÷ denominator``; a ratio whose denominator is 0 has
no value (``None``), never a made-up 0 or 100.
"""

from __future__ import annotations

import fnmatch
import math
from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from hub.clock import Clock
from hub.indicators.definitions import (
    AckWithinTarget,
    AlertCount,
    Availability,
    Completeness,
    DaysMeanAbove,
    DelayQuantile,
    EscalatedShare,
    HoursAbove,
    HoursOk,
    IndicatorDefinition,
    MetricTotal,
    MutedTime,
    RejectionRate,
    ResolutionShare,
    SeqLoss,
    TimeToAcknowledge,
    TimeToResolve,
)
from hub.indicators.fleet import Intervals, MaintenanceIndex, expected_by_group, expected_slots
from hub.indicators.periods import CityCalendar
from hub.indicators.rollup import Totals
from hub.indicators.store import DELAY_EDGES_S, DeviceRecord, IndicatorStore
from hub.ports import (
    DeviceFigure,
    IndicatorInfo,
    IndicatorPoint,
    IndicatorQuery,
    MaintenancePeriod,
    NotFound,
    ResponseFact,
    Scope,
)
from hub.quantiles import quantile

#: Most periods one query may ask for (about three years of days).
MAX_PERIODS = 1100

Key = tuple[str | None, str | None]


class ResponseSource(Protocol):
    """What the alert manager offers the indicators (a part of AlertServicePort)."""

    def response_facts(self, start_ms: int, end_ms: int, scope: Scope) -> list[ResponseFact]:
        """Alerts opened in ``[start_ms, end_ms)`` inside ``scope``."""
        ...

    def maintenance_periods(self, start_ms: int, end_ms: int) -> list[MaintenancePeriod]:
        """Silences and maintenance window occurrences overlapping the range."""
        ...


@dataclass(slots=True)
class _Acc:
    """What one point adds up."""

    totals: Totals = field(default_factory=Totals)
    expected: int = 0
    values: list[float] = field(default_factory=list)
    num: float = 0.0
    den: float = 0.0
    count: int = 0
    delays: list[int] = field(default_factory=list)
    daily: dict[int, list[float]] = field(default_factory=dict)


def info(d: IndicatorDefinition) -> IndicatorInfo:
    """The API's view of a definition."""
    return IndicatorInfo(
        id=d.id,
        title=d.title,
        unit=d.unit,
        description=d.description,
        formula=d.formula,
        source=d.source,
        direction=d.direction,
        target=d.target,
        reference=d.reference,
        headline=d.headline,
        version=d.version,
        measure=d.measure.model_dump(mode="json"),
        ratio=d.is_ratio,
        per_device=d.per_device,
    )


def _pct(num: float, den: float) -> float | None:
    return 100.0 * num / den if den else None


def _allowed(filter_value: str | None, scope_values: frozenset[str] | None) -> list[str] | None:
    """The values a query may see: the filter, within the scope (None: all)."""
    if scope_values is None:
        return None if filter_value is None else [filter_value]
    if filter_value is None:
        return sorted(scope_values)
    return [filter_value] if filter_value in scope_values else []


def _key_fn(by: str) -> Callable[[str, str], Key]:
    if by == "district":
        return lambda d, a: (d, None)
    if by == "asset_type":
        return lambda d, a: (None, a)
    if by == "district_asset_type":
        return lambda d, a: (d, a)
    return lambda d, a: (None, None)


def _domain_assets(d: IndicatorDefinition, assets: list[str] | None) -> list[str] | None:
    """A domain indicator sees its own asset type only (within what the query allows)."""
    m = d.measure
    if not isinstance(m, DaysMeanAbove | HoursAbove | HoursOk | MetricTotal):
        return assets
    if assets is None:
        return [m.asset_type]
    return [a for a in assets if a == m.asset_type]


def _delay_quantile(buckets: Sequence[int], q: float) -> float | None:
    total = sum(buckets)
    if not total:
        return None
    rank = max(1, math.ceil(q / 100 * total))
    seen = 0
    for i, n in enumerate(buckets):
        seen += n
        if seen >= rank:
            return float(DELAY_EDGES_S[min(i, len(DELAY_EDGES_S) - 1)])
    return float(DELAY_EDGES_S[-1])


class IndicatorService:
    """Implements :class:`hub.ports.IndicatorPort` over an :class:`IndicatorStore`."""

    def __init__(
        self,
        store: IndicatorStore,
        calendar: CityCalendar,
        definitions: Iterable[IndicatorDefinition],
        *,
        intervals: Intervals,
        clock: Clock,
        responses: ResponseSource | None,
        devices: Callable[[], Iterable[DeviceRecord]],
    ) -> None:
        self._store = store
        self._cal = calendar
        self._defs: dict[str, IndicatorDefinition] = {d.id: d for d in definitions}
        self._intervals = intervals
        self._clock = clock
        self._responses = responses
        self._devices = devices

    @property
    def calendar(self) -> CityCalendar:
        """The city's calendar (periods of its time zone)."""
        return self._cal

    def set_definitions(self, definitions: Iterable[IndicatorDefinition]) -> None:
        """Serve these definitions from now on."""
        self._defs = {d.id: d for d in definitions}

    def loaded(self) -> list[IndicatorDefinition]:
        """The loaded definitions, in file order."""
        return list(self._defs.values())

    # ------------------------------------------------------------------ port

    def definitions(self) -> list[IndicatorInfo]:
        """Every loaded definition, in file order."""
        return [info(d) for d in self._defs.values()]

    def definition(self, indicator_id: str) -> IndicatorInfo | None:
        """One definition, or None."""
        d = self._defs.get(indicator_id)
        return info(d) if d is not None else None

    def _require(self, indicator_id: str) -> IndicatorDefinition:
        d = self._defs.get(indicator_id)
        if d is None:
            raise NotFound(f"no indicator {indicator_id!r}")
        return d

    def series(self, query: IndicatorQuery, scope: Scope) -> list[IndicatorPoint]:
        """Values per period and group inside ``scope`` (see the module docstring)."""
        d = self._require(query.id)
        periods = self._cal.periods(query.period, query.start_ms, query.end_ms)
        if len(periods) > MAX_PERIODS:
            raise ValueError(
                f"{len(periods)} periods asked; at most {MAX_PERIODS} per query"
                " (a longer period or a shorter range)"
            )
        if not periods:
            return []
        starts = [p[0] for p in periods]
        lo, hi = periods[0][0], periods[-1][1]
        districts = _allowed(query.district, scope.districts)
        assets = _allowed(query.asset_type, scope.asset_types)
        assets = _domain_assets(d, assets)
        key_of = _key_fn(query.by)
        acc: dict[tuple[int, Key], _Acc] = {}

        def slot(day_ms: int, district: str, asset: str) -> _Acc:
            pi = bisect_right(starts, day_ms) - 1
            k = (pi, key_of(district, asset))
            got = acc.get(k)
            if got is None:
                got = acc[k] = _Acc()
            return got

        if d.source in ("telemetry", "device_status"):
            self._telemetry(d, lo, hi, districts, assets, slot)
        elif d.source == "ingest":
            self._ingest(d, lo, hi, districts, assets, slot)
        else:
            self._alerts(d, query, lo, hi, scope, districts, assets, slot)
        now = self._clock.now_ms()
        points = []
        for (pi, (district, asset)), a in acc.items():
            value, num, den = self._value(d, a, periods[pi], now)
            points.append(IndicatorPoint(periods[pi][0], district, asset, value, num, den))
        points.sort(key=lambda p: (p.period_start_ms, p.district or "", p.asset_type or ""))
        return points

    # ------------------------------------------------------------------ sources

    def _telemetry(
        self,
        d: IndicatorDefinition,
        lo: int,
        hi: int,
        districts: list[str] | None,
        assets: list[str] | None,
        slot: Callable[[int, str, str], _Acc],
    ) -> None:
        plain = isinstance(d.measure, Completeness | Availability | SeqLoss)
        for row in self._store.group_days(lo, hi, districts, assets, domain=not plain):
            a = slot(row.day_ms, row.district, row.asset_type)
            a.totals.add(row.totals)
            if isinstance(d.measure, DaysMeanAbove | MetricTotal):
                metric = d.measure.metric
                n = row.totals.domain.get("n", {}).get(metric, 0)
                if n:
                    sums = a.daily.setdefault(row.day_ms, [0.0, 0.0])
                    sums[0] += n
                    sums[1] += row.totals.domain.get("s", {}).get(metric, 0.0)
        if isinstance(d.measure, Completeness | Availability):
            for day_ms, groups in self.expected_days(lo, hi).items():
                for (district, asset), slots in groups.items():
                    if (districts is None or district in districts) and (
                        assets is None or asset in assets
                    ):
                        slot(day_ms, district, asset).expected += slots

    def expected_days(self, lo: int, hi: int) -> dict[int, Mapping[tuple[str, str], int]]:
        """Expected slots per day and (district, asset type), for the days of
        ``[lo, hi)`` that have begun: cached for closed days, computed for the others."""
        now = self._clock.now_ms()
        cached = self._store.expected(lo, hi)
        out: dict[int, Mapping[tuple[str, str], int]] = {}
        missing: list[int] = []
        for day in self._cal.days(lo, min(hi, now + 1)):
            got = cached.get(day)
            if got is None:
                missing.append(day)
            else:
                out[day] = got
        if missing:
            devices = list(self._devices())
            index = self._maintenance(missing[0], self._cal.day_end(missing[-1]))
            for day in missing:
                until = min(now, self._cal.day_end(day) - 1)
                out[day] = expected_by_group(devices, self._cal, day, until, self._intervals, index)
        return out

    def _maintenance(self, lo: int, hi: int) -> MaintenanceIndex:
        if self._responses is None:
            return MaintenanceIndex(())
        return MaintenanceIndex(self._responses.maintenance_periods(lo, hi))

    def _ingest(
        self,
        d: IndicatorDefinition,
        lo: int,
        hi: int,
        districts: list[str] | None,
        assets: list[str] | None,
        slot: Callable[[int, str, str], _Acc],
    ) -> None:
        m = d.measure
        for (district, asset, day), arr in self._store.arrivals(lo, hi, districts, assets).items():
            a = slot(day, district, asset)
            if isinstance(m, DelayQuantile):
                if not a.delays:
                    a.delays = [0] * len(arr.delays)
                for i, n in enumerate(arr.delays):
                    a.delays[i] += n
            elif isinstance(m, RejectionRate):
                rejected = sum(
                    n
                    for reason, n in arr.rejected.items()
                    if m.reasons is None or reason in m.reasons
                )
                a.num += rejected
                a.den += arr.accepted + rejected

    def _alerts(
        self,
        d: IndicatorDefinition,
        query: IndicatorQuery,
        lo: int,
        hi: int,
        scope: Scope,
        districts: list[str] | None,
        assets: list[str] | None,
        slot: Callable[[int, str, str], _Acc],
    ) -> None:
        if self._responses is None:
            return
        m = d.measure
        wanted_assets = assets
        measure_asset = getattr(m, "asset_type", None)
        rules: list[str] | None = getattr(m, "rules", None)
        severities: list[str] | None = getattr(m, "severities", None)
        now = self._clock.now_ms()
        count = _alert_counter(m, now)
        for f in self._responses.response_facts(lo, hi, scope):
            if districts is not None and f.district not in districts:
                continue
            if wanted_assets is not None and f.asset_type not in wanted_assets:
                continue
            if measure_asset is not None and f.asset_type != measure_asset:
                continue
            if rules is not None and not any(fnmatch.fnmatchcase(f.rule_id, g) for g in rules):
                continue
            if severities is not None and f.severity not in severities:
                continue
            if query.severity is not None and f.severity != query.severity:
                continue
            if query.rule_id is not None and f.rule_id != query.rule_id:
                continue
            a = slot(self._cal.day_start(f.started_ms), f.district, f.asset_type)
            a.count += 1
            count(f, a)

    # ------------------------------------------------------------------ values

    def _value(
        self, d: IndicatorDefinition, a: _Acc, period: tuple[int, int], now: int
    ) -> tuple[float | None, float | None, float | None]:
        m = d.measure
        t = a.totals
        if isinstance(m, Completeness):
            return _pct(t.received, a.expected), t.received, a.expected
        if isinstance(m, Availability):
            return _pct(t.up, a.expected), t.up, a.expected
        if isinstance(m, SeqLoss):
            sent = t.seq_n + t.seq_lost
            return _pct(t.seq_lost, sent), t.seq_lost, sent
        if isinstance(m, HoursAbove):
            return float(t.domain.get("h", {}).get(d.id, 0)), None, None
        if isinstance(m, HoursOk):
            counted, ok = t.domain.get("c", {}).get(d.id, [0, 0])
            return _pct(ok, counted), ok, counted
        if isinstance(m, MetricTotal):
            total = t.domain.get("s", {}).get(m.metric, 0.0) * m.scale
            if m.per == "period":
                return total, None, None
            days = sum(1 for n, _ in a.daily.values() if n)
            return (total / days if days else None), total, days
        if isinstance(m, DaysMeanAbove):
            above = sum(1 for n, s in a.daily.values() if n and s / n > m.threshold)
            return float(above), None, None
        if isinstance(m, DelayQuantile):
            return _delay_quantile(a.delays, m.quantile), None, None
        if isinstance(m, TimeToAcknowledge | TimeToResolve):
            return quantile(a.values, m.quantile), None, None
        if isinstance(m, AlertCount):
            return float(a.count), None, None
        if isinstance(m, MutedTime):
            return a.num / 3_600_000, None, None
        # ratios of counted alerts or rejections
        return _pct(a.num, a.den), a.num, a.den

    # ------------------------------------------------------------------ devices

    def devices(self, query: IndicatorQuery, scope: Scope, limit: int) -> list[DeviceFigure]:
        """Each device's value over the whole range, worst first (district drill-down)."""
        d = self._require(query.id)
        if not d.per_device:
            raise ValueError(f"indicator {d.id!r} has no value per device")
        periods = self._cal.periods(query.period, query.start_ms, query.end_ms)
        if not periods:
            return []
        lo, hi = periods[0][0], periods[-1][1]
        districts = _allowed(query.district, scope.districts)
        assets = _allowed(query.asset_type, scope.asset_types)
        m = d.measure
        assets = _domain_assets(d, assets)
        totals: dict[str, Totals] = {}
        where: dict[str, tuple[str, str]] = {}
        plain = isinstance(m, Completeness | Availability | SeqLoss)
        for row in self._store.device_days(lo, hi, districts, assets, domain=not plain):
            assert row.device_id is not None
            totals.setdefault(row.device_id, Totals()).add(row.totals)
            where[row.device_id] = (row.district, row.asset_type)
        expected: dict[str, int] = {}
        if isinstance(m, Completeness | Availability):
            expected = self._device_expected(lo, hi, districts, assets, where)
        out: list[DeviceFigure] = []
        now = self._clock.now_ms()
        for device_id in sorted(set(totals) | set(expected)):
            t = totals.get(device_id, Totals())
            acc = _Acc(totals=t, expected=expected.get(device_id, 0))
            value, num, den = self._value(d, acc, (lo, hi), now)
            district, asset = where[device_id]
            out.append(DeviceFigure(device_id, district, asset, value, num, den))
        worst_first = d.direction == "higher_is_better"
        out.sort(
            key=lambda f: (
                f.value is None,
                (f.value if worst_first else -f.value) if f.value is not None else 0.0,
                f.device_id,
            )
        )
        return out[: max(0, limit)]

    def _device_expected(
        self,
        lo: int,
        hi: int,
        districts: list[str] | None,
        assets: list[str] | None,
        where: dict[str, tuple[str, str]],
    ) -> dict[str, int]:
        now = self._clock.now_ms()
        days = self._cal.days(lo, min(hi, now + 1))
        if not days:
            return {}
        index = self._maintenance(days[0], self._cal.day_end(days[-1]))
        out: dict[str, int] = {}
        for dev in self._devices():
            if districts is not None and dev.district not in districts:
                continue
            if assets is not None and dev.asset_type not in assets:
                continue
            iv = self._intervals(dev.asset_type)
            if iv is None:
                continue
            spans = index.spans(dev) if index else []
            n = 0
            for day in days:
                day_end = self._cal.day_end(day)
                n += expected_slots(dev, day, day_end, iv, min(now, day_end - 1), spans)
            if n:
                out[dev.device_id] = n
                where.setdefault(dev.device_id, (dev.district, dev.asset_type))
        return out

    def rejections(self, start_ms: int, end_ms: int, scope: Scope) -> dict[str, dict[str, int]]:
        """Readings rejected per district and reason, by the day they arrived."""
        districts = _allowed(None, scope.districts)
        assets = _allowed(None, scope.asset_types)
        out: dict[str, dict[str, int]] = {}
        for (district, _, _), a in self._store.arrivals(
            start_ms, end_ms, districts, assets
        ).items():
            for reason, n in a.rejected.items():
                by = out.setdefault(district, {})
                by[reason] = by.get(reason, 0) + n
        return out

    # ------------------------------------------------------------------ gauges

    def headline(self, scope: Scope) -> dict[tuple[str, str], float]:
        """Today's value so far of each headline indicator per district."""
        now = self._clock.now_ms()
        out: dict[tuple[str, str], float] = {}
        for d in self._defs.values():
            if not d.headline:
                continue
            q = IndicatorQuery(d.id, "day", self._cal.day_start(now), now + 1)
            for p in self.series(q, scope):
                if p.value is not None and p.district is not None:
                    out[(d.id, p.district)] = p.value
        return out


def _alert_counter(m: object, now: int) -> Callable[[ResponseFact, _Acc], None]:
    """How one alert adds to a point of response measure ``m`` (chosen once per query)."""

    def nothing(f: ResponseFact, a: _Acc) -> None:
        return None

    def acknowledge(f: ResponseFact, a: _Acc) -> None:
        if f.responded_ms is not None:
            a.values.append((f.responded_ms - f.started_ms) / 1000)

    def resolve(f: ResponseFact, a: _Acc) -> None:
        if f.resolved_ms is not None:
            a.values.append((f.resolved_ms - f.started_ms) / 1000)

    def in_target(f: ResponseFact, a: _Acc) -> None:
        verdict = ack_verdict(f, now)
        if verdict is not None:
            a.den += 1
            a.num += verdict

    def escalated(f: ResponseFact, a: _Acc) -> None:
        a.den += 1
        a.num += 1 if f.escalations else 0

    def muted(f: ResponseFact, a: _Acc) -> None:
        a.num += f.muted_ms

    if isinstance(m, TimeToAcknowledge):
        return acknowledge
    if isinstance(m, TimeToResolve):
        return resolve
    if isinstance(m, AckWithinTarget):
        return in_target
    if isinstance(m, EscalatedShare):
        return escalated
    if isinstance(m, MutedTime):
        return muted
    if isinstance(m, ResolutionShare):
        reasons = set(m.reasons)

        def resolution(f: ResponseFact, a: _Acc) -> None:
            if f.resolved_ms is not None:
                a.den += 1
                a.num += 1 if f.resolution in reasons else 0

        return resolution
    return nothing


def ack_verdict(f: ResponseFact, now: int) -> int | None:
    """1 acknowledged within target, 0 not, None when it does not count (no target for
    its severity; cleared by itself within the target with nobody needed; undecided)."""
    target = f.ack_target_ms
    if target is None:
        return None
    deadline = f.started_ms + target
    if f.responded_ms is not None:
        return 1 if f.responded_ms <= deadline else 0
    end = f.resolved_ms if f.resolved_ms is not None else now
    if end > deadline:
        return 0  # nobody acted in time (it may have cleared later, or still be open)
    # Cleared by itself before anyone had to act, or still open within its target.
    return None
