"""The rule engine: per-series lifecycle (inactive -> pending -> firing -> resolved).

Pure and deterministic: time comes from readings (event time) and from the
``now_ms`` given to :meth:`RuleEngine.tick`. Rules are indexed by asset type and
metric, and the set of rules that apply to a device's readings is cached, so a
reading costs only the rules that can match it.

Lifecycle (Prometheus alerting rules, plus hysteresis and off-delay):

* condition true: inactive -> pending (``for`` > 0) or firing (``for`` = 0);
  pending -> firing once it has held ``for`` (by reading time, or by tick);
* condition false: pending -> inactive (silently); firing -> resolved once it
  has stayed false ``clear_for`` (the threshold's ``clear`` level decides "false");
* an alert resolved by hand (:meth:`RuleEngine.rearm`): its firing series fires
  again at the next evaluation where the condition holds, and goes inactive at the
  next where it does not, so a resolution never silences a condition that holds.

Late readings: a reading older than the newest already evaluated for its series
is not evaluated; within ``late_tolerance_s`` it still joins the windows of
window kinds; older ones are only counted.

Device labels (``match.labels``) are looked up only for rules that have them, and
only when a device's plan is built; ``labels_version`` (checked by :meth:`tick`)
tells the engine that provisioning changed, so plans are rebuilt and series of
rules that no longer match their device are closed.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Generator, Iterable, Mapping
from typing import Any

import orjson

from hub.logging import get_logger
from hub.messages import (
    AREA_SOURCE,
    CitizenReport,
    Explanation,
    MetricValue,
    Reading,
    RuleEvent,
    RuleState,
)
from hub.rules.kinds import Area, CitizenReports, Kind, NoData, compile_rule
from hub.rules.model import DEFAULT_SENSOR_FAULT, SENSOR_FAULT_ID, RuleModel
from hub.rules.state import FIRING, INACTIVE, PENDING, Series

log = get_logger(__name__)

SNAPSHOT_FORMAT = 1
#: Series dumped between two pauses of :meth:`RuleEngine.snapshot_steps` (~5 ms of CPU).
SNAPSHOT_CHUNK = 2000
#: The per-device plan cache is cleared past this many entries (bounded memory).
PLAN_CACHE_MAX = 500_000
_STATE_OF = {"firing": FIRING, "pending": PENDING}
#: ``Series.clear_since`` of a firing series whose alert an operator resolved by hand
#: (-1 is "not clearing", a time is "clearing since"): the next evaluation where the
#: condition holds fires it again, the next where it does not makes it inactive.
#: Saved and restored with the rest of the series.
REARMED = -2


class RuleEngine:
    """Evaluates readings against rules; returns state changes as RuleEvents."""

    def __init__(
        self,
        rules: Iterable[RuleModel],
        *,
        late_tolerance_s: int,
        expected_interval_s: Callable[[str], float | None],
        device_labels: Callable[[str], Mapping[str, str]] | None = None,
        labels_version: Callable[[], int] | None = None,
    ) -> None:
        self._tol_ms = late_tolerance_s * 1000
        self._expected = expected_interval_s
        self._labels = device_labels
        self._labels_version = labels_version
        self._labels_seen = labels_version() if labels_version is not None else 0
        self._kinds: dict[str, Kind] = {}
        #: The snapshot being built, if any (copy-on-write: see snapshot_steps).
        self._snap: _Snapshot | None = None
        self._by_asset: dict[str, list[Kind]] = {}
        self._any_asset: list[Kind] = []
        self._areas_of: dict[str, list[Area]] = {}
        self._no_data: list[NoData] = []
        self._report_kinds: list[CitizenReports] = []
        self._plans: dict[tuple[str, str, str, tuple[str, ...]], tuple[Kind, ...]] = {}
        self._devs: dict[str, tuple[str, str, str]] = {}
        # target rule id -> district -> series key -> series, for rules that area rules count
        self._members: dict[str, dict[str, dict[str, Series]]] = {}
        self._timers: set[tuple[str, str]] = set()
        self._now = 0
        self.evaluations = 0
        self.late_readings = 0
        self.set_rules(rules)

    # ------------------------------------------------------------------ rules

    @property
    def rules(self) -> list[RuleModel]:
        """The active (enabled) rules, built-ins included."""
        return [k.rule for k in self._kinds.values()]

    def matching_rules(self, district: str, asset_type: str, device_id: str) -> list[RuleModel]:
        """The active device rules (not area rules) that apply to one device."""
        return [
            k.rule
            for k in self._kinds.values()
            if not k.is_area and k.matches(district, asset_type, device_id, self._labels)
        ]

    def version_of(self, rule_id: str) -> str | None:
        """Content hash of an active rule."""
        k = self._kinds.get(rule_id)
        return k.version if k else None

    def set_rules(self, rules: Iterable[RuleModel]) -> list[RuleEvent]:
        """Swap the rule set; unchanged rules (same version) keep their series state.

        Returns RESOLVED for every firing series of a rule that was removed,
        disabled or changed (a changed rule restarts from a clean state).
        """
        wanted = [r for r in rules if r.enabled]
        ids = {r.id for r in rules}
        if SENSOR_FAULT_ID not in ids:
            wanted.append(DEFAULT_SENSOR_FAULT)
        old = self._kinds
        new: dict[str, Kind] = {}
        events: list[RuleEvent] = []
        for rule in wanted:
            if rule.id in new:
                continue  # the loader reports duplicates; first wins here too
            k = compile_rule(rule, self._expected)
            prev = old.get(rule.id)
            if prev is not None and prev.version == k.version:
                k.series = prev.series
            new[rule.id] = k
        for rid, prev in old.items():
            k2 = new.get(rid)
            if k2 is not None and k2.series is prev.series:
                continue
            why = "was removed" if k2 is None else f"changed (now version {k2.version})"
            for s in prev.series.values():
                if s.state == FIRING:
                    events.append(self._closing_event(prev, s, why))
        self._kinds = new
        self._index()
        events.extend(self._recount_areas())
        return events

    def _index(self) -> None:
        self._by_asset = {}
        self._any_asset = []
        self._areas_of = {}
        self._no_data = []
        self._report_kinds = []
        self._plans.clear()
        for k in self._kinds.values():
            if isinstance(k, Area):
                self._areas_of.setdefault(k.target, []).append(k)
                continue
            if isinstance(k, CitizenReports):
                self._report_kinds.append(k)
                continue
            if isinstance(k, NoData):
                self._no_data.append(k)
            if k.asset_type_literal is not None:
                self._by_asset.setdefault(k.asset_type_literal, []).append(k)
            else:
                self._any_asset.append(k)
        self._timers = {
            (rid, key)
            for rid, k in self._kinds.items()
            for key, s in k.series.items()
            if s.state == PENDING or (s.state == FIRING and s.clear_since >= 0)
        }

    def _recount_areas(self) -> list[RuleEvent]:
        """Rebuild area membership from the series and re-decide every area rule."""
        self._members = {}
        for target in self._areas_of:
            k = self._kinds.get(target)
            per: dict[str, dict[str, Series]] = {}
            if k is not None:
                for key, s in k.series.items():
                    if s.state != INACTIVE:
                        per.setdefault(s.dev[0], {})[key] = s
            self._members[target] = per
        events: list[RuleEvent] = []
        for target, areas in self._areas_of.items():
            districts = set(self._members[target])
            for a in areas:
                districts.update(a.series)
            for district in sorted(districts):
                self._decide_area(target, district, self._now, events)
        return events

    # ------------------------------------------------------------------ readings

    def _plan(self, reading: Reading, names: tuple[str, ...]) -> tuple[Kind, ...]:
        key = (reading.district, reading.asset_type, reading.device_id, names)
        plan = self._plans.get(key)
        if plan is None:
            if len(self._plans) >= PLAN_CACHE_MAX:
                self._plans.clear()
            cands = self._by_asset.get(reading.asset_type, []) + self._any_asset
            plan = tuple(
                k
                for k in cands
                if (not k.metrics or any(m in names for m in k.metrics))
                and k.matches(reading.district, reading.asset_type, reading.device_id, self._labels)
            )
            self._plans[key] = plan
        return plan

    def evaluate(self, reading: Reading) -> list[RuleEvent]:
        """Evaluate one reading against the rules that can match it."""
        values: Mapping[str, MetricValue] = reading.metrics
        if reading.out_of_range:
            # Implausible values are a sensor fault, not an emergency: only the
            # sensor-fault rule sees them.
            bad = reading.out_of_range
            values = {m: v for m, v in values.items() if m not in bad}
        plan = self._plan(reading, tuple(values))
        if not plan:
            return []
        ts = reading.ts_ms
        self._now = max(self._now, ts)
        key = f"{reading.district}/{reading.device_id}"
        dev = self._devs.get(key)
        if dev is None:
            dev = self._devs[key] = (reading.district, reading.asset_type, reading.device_id)
        events: list[RuleEvent] = []
        late = False
        snap = self._snap
        for k in plan:
            s = k.series.get(key)
            if s is None:
                s = k.series[key] = Series(dev, k.new_aux())
            elif snap is not None:
                snap.keep(k, key)
            last = s.last_ts
            if ts < last:
                late = True
                if ts >= last - self._tol_ms:
                    k.late(s, ts, values)
                continue
            cond = k.step(s, ts, values, reading)
            s.last_ts = ts
            if cond is None:
                continue
            # The common cases change nothing: skip the call (~15 % of engine CPU).
            if cond:
                if s.state == FIRING and s.clear_since == -1:
                    continue
            elif s.state == INACTIVE:
                continue
            self._lifecycle(k, s, key, cond, ts, reading.received_ms, events)
        self.evaluations += len(plan)
        if late:
            self.late_readings += 1
        return events

    def prime(self, reading: Reading) -> None:
        """Feed a past reading into windows only: no state change, no event.

        Used on a cold start (no saved state) to rebuild windows from the store, so
        ``rate_of_change``, ``anomaly`` and composite change conditions decide from
        their first live reading instead of after a fresh warm-up. Feed it in time order.
        """
        values: Mapping[str, MetricValue] = reading.metrics
        if reading.out_of_range:
            bad = reading.out_of_range
            values = {m: v for m, v in values.items() if m not in bad}
        plan = self._plan(reading, tuple(values))
        ts = reading.ts_ms
        key = f"{reading.district}/{reading.device_id}"
        dev = self._devs.get(key)
        if dev is None:
            dev = self._devs[key] = (reading.district, reading.asset_type, reading.device_id)
        for k in plan:
            if not k.primes:
                continue
            s = k.series.get(key)
            if s is None:
                s = k.series[key] = Series(dev, k.new_aux())
            # last_ts stays untouched: a live reading replayed from the journal that is
            # also in the store must still be evaluated, not taken for a late one.
            k.step(s, ts, values, reading)

    # ------------------------------------------------------------------ citizen reports

    def observe_report(self, report: CitizenReport) -> list[RuleEvent]:
        """A citizen's report arrived: ``citizen_reports`` rules of its service count it."""
        out: list[RuleEvent] = []
        for k in self._report_kinds:
            s = self._report_series(k, report)
            if s is None or not k.add(s, report):
                continue
            ts = max(report.ts_ms, s.last_ts)
            s.last_ts = ts
            self._now = max(self._now, ts)
            held = k.holds(s, ts)
            if held or s.state != INACTIVE:
                self._lifecycle(k, s, report.district, held, ts, report.ts_ms, out)
        return out

    def prime_report(self, report: CitizenReport) -> None:
        """Count a past report into ``citizen_reports`` windows only: no state change, no
        event (a start rebuilds the windows from the stored reports)."""
        for k in self._report_kinds:
            s = self._report_series(k, report)
            if s is not None and k.add(s, report):
                s.last_ts = max(s.last_ts, report.ts_ms)

    def _report_series(self, k: CitizenReports, report: CitizenReport) -> Series | None:
        if not k.accepts(report):
            return None
        s = k.series.get(report.district)
        if s is None:
            dev = (report.district, report.asset_type or "citizen_report", AREA_SOURCE)
            s = k.series[report.district] = Series(dev, k.new_aux())
        elif self._snap is not None:
            self._snap.keep(k, report.district)
        return s

    def history_window_ms(self) -> int:
        """How far back :meth:`prime` needs history for the current rules."""
        return max((k.history_ms for k in self._kinds.values() if k.primes), default=0)

    def prime_asset_types(self) -> list[str] | None:
        """Asset types whose history :meth:`prime` can use (None: any asset type)."""
        types: set[str] = set()
        for k in self._kinds.values():
            if not k.primes:
                continue
            if k.asset_type_literal is None:
                return None
            types.add(k.asset_type_literal)
        return sorted(types)

    # ------------------------------------------------------------------ lifecycle

    def _lifecycle(
        self, k: Kind, s: Series, key: str, cond: bool, ts: int, recv: int, out: list[RuleEvent]
    ) -> None:
        st = s.state
        if st == FIRING and s.clear_since == REARMED:
            # Its alert was resolved by hand: still true opens a new one, false ends it.
            if cond:
                self._fire(k, s, key, ts, recv, out)
            else:
                self._resolve(k, s, key, ts, recv, out)
            return
        if cond:
            if st == FIRING:
                if s.clear_since >= 0:
                    s.clear_since = -1
                    self._timers.discard((k.id, key))
                return
            if st == INACTIVE:
                s.since = ts
                if k.for_ms <= 0:
                    self._fire(k, s, key, ts, recv, out)
                    return
                s.state = PENDING
                self._timers.add((k.id, key))
                out.append(self._event(k, s, RuleState.PENDING, ts, recv))
                self._membership(k, s, key, INACTIVE, ts, out)
                return
            if ts - s.since >= k.for_ms:
                self._fire(k, s, key, ts, recv, out)
            return
        if st == PENDING:
            s.state = INACTIVE
            self._timers.discard((k.id, key))
            self._membership(k, s, key, PENDING, ts, out)
        elif st == FIRING:
            if k.clear_for_ms <= 0:
                self._resolve(k, s, key, ts, recv, out)
                return
            if s.clear_since < 0:
                s.clear_since = ts
                self._timers.add((k.id, key))
            if ts - s.clear_since >= k.clear_for_ms:
                self._resolve(k, s, key, ts, recv, out)

    def _fire(self, k: Kind, s: Series, key: str, ts: int, recv: int, out: list[RuleEvent]) -> None:
        prev = s.state
        s.state = FIRING
        s.since = ts
        s.clear_since = -1
        self._timers.discard((k.id, key))
        out.append(self._event(k, s, RuleState.FIRING, ts, recv))
        self._membership(k, s, key, prev, ts, out)

    def _resolve(
        self, k: Kind, s: Series, key: str, ts: int, recv: int, out: list[RuleEvent]
    ) -> None:
        # A late-delivered reading can clear a series fired by a timer after that
        # reading's time; the resolution is never stamped before the firing.
        ts = max(ts, s.since)
        s.state = INACTIVE
        s.since = ts
        s.clear_since = -1
        self._timers.discard((k.id, key))
        out.append(self._event(k, s, RuleState.RESOLVED, ts, recv))
        self._membership(k, s, key, FIRING, ts, out)

    def _event(self, k: Kind, s: Series, state: RuleState, ts: int, recv: int) -> RuleEvent:
        district, asset_type, source = s.dev
        return RuleEvent(
            rule_id=k.id,
            rule_version=k.version,
            state=state,
            severity=k.severity,
            district=district,
            asset_type=asset_type,
            source=source,
            ts_ms=ts,
            explanation=k.explain(s, state),
            labels=k.rule.labels,
            description=k.rule.description,
            reading_received_ms=recv,
        )

    def _closing_event(self, k: Kind, s: Series, why: str) -> RuleEvent:
        district, asset_type, source = s.dev
        return RuleEvent(
            rule_id=k.id,
            rule_version=k.version,
            state=RuleState.RESOLVED,
            severity=k.severity,
            district=district,
            asset_type=asset_type,
            source=source,
            ts_ms=self._now,
            explanation=Explanation(f"Rule {k.id} {why}; its alert for {source} is closed."),
            labels=k.rule.labels,
            description=k.rule.description,
        )

    def rearm(self, rule_id: str, district: str, source: str) -> bool:
        """An operator resolved this series' alert by hand: if the series is firing, the
        next evaluation where its condition holds fires it again (the alert comes
        back, as a new one), and the next where it does not makes it inactive.
        Returns True when the condition held at its last evaluation."""
        k = self._kinds.get(rule_id)
        if k is None:
            return False
        key = district if k.is_area else f"{district}/{source}"
        s = k.series.get(key)
        if s is None or s.state != FIRING:
            return False
        if self._snap is not None:
            self._snap.keep(k, key)
        held = s.clear_since == -1
        s.clear_since = REARMED
        self._timers.discard((k.id, key))
        return held

    def firing(self) -> list[tuple[str, str, str]]:
        """(rule id, district, source) of every firing series (re-armed ones included)."""
        return [
            (rid, s.dev[0], s.dev[2])
            for rid, k in self._kinds.items()
            for s in k.series.values()
            if s.state == FIRING
        ]

    # ------------------------------------------------------------------ area rules

    def _membership(
        self, k: Kind, s: Series, key: str, old: int, ts: int, out: list[RuleEvent]
    ) -> None:
        if k.id not in self._areas_of or old == s.state:
            return
        per = self._members.setdefault(k.id, {}).setdefault(s.dev[0], {})
        if s.state == INACTIVE:
            per.pop(key, None)
        else:
            per[key] = s
        self._decide_area(k.id, s.dev[0], ts, out)

    def _decide_area(self, target: str, district: str, ts: int, out: list[RuleEvent]) -> None:
        per = self._members.get(target, {}).get(district, {})
        for a in self._areas_of.get(target, ()):
            want = _STATE_OF[a.target_state]
            members = sorted(
                m.dev[2]
                for m in per.values()
                if m.state == want and a.matches(m.dev[0], m.dev[1], m.dev[2], self._labels)
            )
            s = a.series.get(district)
            if s is None:
                if not members:
                    continue
                asset = next(m.dev[1] for m in per.values() if m.dev[2] == members[0])
                s = a.series[district] = Series((district, asset, AREA_SOURCE), [])
            elif self._snap is not None:
                self._snap.keep(a, district)
            s.aux = members
            s.value = float(len(members))
            s.last_ts = max(s.last_ts, ts)
            self._lifecycle(a, s, district, len(members) >= a.at_least, ts, 0, out)

    # ------------------------------------------------------------------ timers

    def tick(self, now_ms: int) -> list[RuleEvent]:
        """Timer-driven changes at ``now_ms``: no_data, and ``for``/``clear_for`` completion."""
        self._now = max(self._now, now_ms)
        out: list[RuleEvent] = []
        if self._labels_version is not None:
            version = self._labels_version()
            if version != self._labels_seen:
                self._labels_seen = version
                self._relabel(out)
        for rid, key in sorted(self._timers):
            k = self._kinds.get(rid)
            s = k.series.get(key) if k is not None else None
            if k is None or s is None:
                self._timers.discard((rid, key))
                continue
            if self._snap is not None:
                self._snap.keep(k, key)
            if s.state == PENDING and now_ms - s.since >= k.for_ms:
                if k.timer_native or now_ms - s.last_ts <= self._stale_ms(s):
                    self._fire(k, s, key, now_ms, 0, out)
                else:
                    # The condition was last seen too long ago to vouch for it now.
                    s.state = INACTIVE
                    self._timers.discard((rid, key))
                    self._membership(k, s, key, PENDING, now_ms, out)
            elif s.state == FIRING and s.clear_since >= 0:
                if now_ms - s.clear_since >= k.clear_for_ms:
                    self._resolve(k, s, key, now_ms, 0, out)
            elif s.state == INACTIVE or (s.state == FIRING and s.clear_since < 0):
                self._timers.discard((rid, key))
        for nd in self._no_data:
            for key, s in nd.series.items():
                if self._snap is not None:
                    self._snap.keep(nd, key)  # silent() records how long it has been
                silent = nd.silent(s, now_ms)
                if silent or s.state != INACTIVE:
                    self._lifecycle(nd, s, key, silent, now_ms, 0, out)
        for rk in self._report_kinds:
            for key, s in list(rk.series.items()):
                if s.state == INACTIVE and not s.aux:
                    del rk.series[key]  # nothing kept, nothing open: forget the district
                    continue
                if self._snap is not None:
                    self._snap.keep(rk, key)
                held = rk.holds(s, now_ms)
                if s.state != INACTIVE:
                    s.last_ts = max(s.last_ts, now_ms)
                    self._lifecycle(rk, s, key, held, now_ms, 0, out)
        return out

    def _relabel(self, out: list[RuleEvent]) -> None:
        """Provisioning changed: rebuild plans; close series whose device no longer matches."""
        self._plans.clear()
        dropped = False
        for k in self._kinds.values():
            if not k.has_labels or k.is_area:
                continue
            for key, s in list(k.series.items()):
                district, asset_type, device_id = s.dev
                if k.matches(district, asset_type, device_id, self._labels):
                    continue
                if s.state == FIRING:
                    why = "no longer matches the device's labels"
                    out.append(self._closing_event(k, s, why))
                del k.series[key]
                self._timers.discard((k.id, key))
                dropped = True
        if dropped or any(a.has_labels for areas in self._areas_of.values() for a in areas):
            out.extend(self._recount_areas())

    def _stale_ms(self, s: Series) -> float:
        interval = self._expected(s.dev[1]) or 60.0
        return max(self._tol_ms, 2 * interval * 1000)

    # ------------------------------------------------------------------ views

    def counts(self) -> dict[str, tuple[int, int]]:
        """(firing, pending) series per active rule id."""
        out: dict[str, tuple[int, int]] = {}
        for rid, k in self._kinds.items():
            firing = pending = 0
            for s in k.series.values():
                if s.state == FIRING:
                    firing += 1
                elif s.state == PENDING:
                    pending += 1
            out[rid] = (firing, pending)
        return out

    def series_count(self) -> int:
        """Number of live series over all rules."""
        return sum(len(k.series) for k in self._kinds.values())

    def unmatched_rules(self) -> list[str]:
        """Ids of active rules that no reading has matched so far (no series at all).

        An area rule counts as matched once its counted rule has a series on a device
        the area rule's own ``match`` selects (its own series exist only while enough
        devices fire).
        """
        out = []
        for rid, k in self._kinds.items():
            if isinstance(k, Area):
                target = self._kinds.get(k.target)
                matched = target is not None and any(
                    k.matches(s.dev[0], s.dev[1], s.dev[2], self._labels)
                    for s in target.series.values()
                )
            else:
                matched = bool(k.series)
            if not matched:
                out.append(rid)
        return out

    # ------------------------------------------------------------------ persistence

    def snapshot(self) -> bytes:
        """Every rule's series state (compressed JSON), keyed by rule id and version."""
        return compress_snapshot(run_steps(self.snapshot_steps()))

    def snapshot_steps(self, chunk: int = 0) -> Generator[None, None, bytes]:
        """The snapshot as JSON, built in steps: ``yield`` every ``chunk`` series.

        The state is captured when this is called; run the steps to the end, or
        ``close()`` them and call :meth:`discard_snapshot`.

        With 100,000 series the whole dump takes some 0.5 s of CPU; a caller on
        the event loop resumes it step by step, then compresses the result
        (:func:`compress_snapshot`, which releases the GIL) in a worker thread.

        The snapshot is the state at the moment this generator first runs, even
        when readings are evaluated and timers tick between the steps: a series
        about to change that is not dumped yet is dumped first (copy on write).
        So the live stage goes on evaluating while its checkpoint is built, and
        the snapshot still matches the journal offset of that moment. One
        snapshot at a time.
        """
        if self._snap is not None:
            raise RuntimeError("a snapshot is already being built")
        # Taken now, at the call, not when the steps first run.
        snap = self._snap = _Snapshot(self._kinds, self._now)
        return self._build(snap, chunk or SNAPSHOT_CHUNK)

    def _build(self, snap: _Snapshot, chunk: int) -> Generator[None, None, bytes]:
        try:
            return (yield from snap.build(chunk))
        finally:
            self.discard_snapshot()

    def discard_snapshot(self) -> None:
        """Forget the snapshot being built (its steps were abandoned)."""
        self._snap = None

    def restore(self, data: bytes) -> None:
        """Load a :meth:`snapshot`; rules whose version changed since start from scratch."""
        doc = orjson.loads(zlib.decompress(data))
        if doc.get("format") != SNAPSHOT_FORMAT:
            raise ValueError(f"unknown rule state format {doc.get('format')!r}")
        restored: dict[str, dict[str, Series]] = {}
        for rid, saved in doc["rules"].items():
            k = self._kinds.get(rid)
            if k is None or k.version != saved["version"]:
                log.info("rule state not restored: rule gone or changed", rule_id=rid)
                continue
            series: dict[str, Series] = {}
            for key, raw in saved["series"].items():
                s = Series.load(raw, k.load_aux(raw[6]))
                if not k.is_area and not k.is_reports:
                    s.dev = self._devs.setdefault(f"{s.dev[0]}/{s.dev[2]}", s.dev)
                series[key] = s
            restored[rid] = series
        # Applied only once everything parsed: a damaged snapshot changes nothing.
        for rid, series in restored.items():
            self._kinds[rid].series = series
        self._now = max(self._now, int(doc.get("now", 0)))
        self._index()
        self._members = {}
        for target in self._areas_of:
            k = self._kinds.get(target)
            per: dict[str, dict[str, Series]] = {}
            if k is not None:
                for key, s in k.series.items():
                    if s.state != INACTIVE:
                        per.setdefault(s.dev[0], {})[key] = s
            self._members[target] = per


class _Snapshot:
    """A snapshot being built: per rule, the series not dumped yet and those dumped."""

    def __init__(self, kinds: Mapping[str, Kind], now: int) -> None:
        self.head = orjson.dumps({"format": SNAPSHOT_FORMAT, "now": now})
        self.rules = [(rid, k, list(k.series)) for rid, k in kinds.items()]
        # id(kind) -> (the kind, series not dumped yet, dumped series); a shallow
        # copy of each series dict, so series added later are not in the snapshot.
        self.todo: dict[int, tuple[Kind, dict[str, Series], dict[str, Any]]] = {
            id(k): (k, dict(k.series), {}) for k in kinds.values()
        }

    def keep(self, k: Kind, key: str) -> None:
        """Dump ``key``'s series of rule ``k`` now, before it changes (once)."""
        entry = self.todo.get(id(k))
        if entry is not None:
            s = entry[1].pop(key, None)
            if s is not None:
                entry[2][key] = s.dump(k.dump_aux(s.aux))

    def build(self, chunk: int) -> Generator[None, None, bytes]:
        parts: list[bytes] = []
        n = 0
        for rid, k, keys in self.rules:
            _, todo, dumped = self.todo[id(k)]
            while todo:
                key, s = todo.popitem()
                dumped[key] = s.dump(k.dump_aux(s.aux))
                n += 1
                if n % chunk == 0:
                    yield
            del self.todo[id(k)]
            series = {key: dumped[key] for key in keys}
            parts.append(
                orjson.dumps(rid) + b":" + orjson.dumps({"version": k.version, "series": series})
            )
            yield
        # {"format":1,"now":...} + ,"rules":{...}}: one JSON object, assembled.
        return self.head[:-1] + b',"rules":{' + b",".join(parts) + b"}}"


def step(steps: Generator[None, None, bytes]) -> bytes | None:
    """Take one step of :meth:`RuleEngine.snapshot_steps`: the snapshot once built."""
    try:
        next(steps)
    except StopIteration as done:
        raw: bytes = done.value
        return raw
    return None


def run_steps(steps: Generator[None, None, bytes]) -> bytes:
    """Run :meth:`RuleEngine.snapshot_steps` to the end, without pausing."""
    while (raw := step(steps)) is None:
        pass
    return raw


def compress_snapshot(raw: bytes) -> bytes:
    """The snapshot JSON compressed (zlib releases the GIL: run it in a worker thread)."""
    return zlib.compress(raw, 1)
