"""The incremental roll-up: the live stage's readings, statuses and rejections in;
device-hours, device-days and district-days out.

**Hot path** (:meth:`IndicatorUpdater.observe`, called by the live consumer with each
journal batch): memory only. Each reading sets its slot's bit in its device-hour
(:class:`hub.indicators.rollup.HourState`, loaded from the store the first time an
hour is touched, then kept in memory), adds its seq and, for the metrics domain
indicators use, its value; its delay goes into the histogram of its district-day.
A reading of any ``ts`` within the backfill window lands in the hour of its ``ts``:
late and backfilled readings count for the period they are about.

**Flush** (:meth:`IndicatorUpdater.flush`, at each live checkpoint and on stop): the
device-hours changed since the last flush are copied, then written in one store
transaction in a worker thread (the event loop goes on evaluating readings), where
each hour's figures are derived again (the hour before, maintenance and ``offline``
statuses are read there) and the difference to the figures stored before is added
to its device-day and district-day. An hour whose change alters what the next hour
inherits (availability's grace, the last seq) has its successor derived again too.

Replaying the journal after a crash is harmless for everything but the delay
histogram and the rejection counts: slots and seq numbers are sets, so a reading
seen twice counts once. Readings replayed after a crash (at most one checkpoint's
worth) are counted twice in those two.
"""

from __future__ import annotations

import asyncio
import heapq
from bisect import bisect_left, insort
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import orjson

from hub.clock import Clock
from hub.indicators.definitions import (
    HoursOk,
    IndicatorDefinition,
    domain_checks,
    domain_metrics,
    thresholds,
)
from hub.indicators.fleet import Intervals, MaintenanceIndex, expected_by_group
from hub.indicators.periods import (
    DAY_MS,
    HOUR_MS,
    CityCalendar,
    first_slot_of_hour,
    slots_starting_in,
)
from hub.indicators.rollup import (
    ZERO,
    HourFigures,
    HourState,
    Totals,
    add_seq,
    check_reading,
    derive,
    interval_mask,
    offline_intervals,
)
from hub.indicators.store import (
    DELAY_EDGES_S,
    Arrivals,
    DeviceDayKey,
    DeviceRecord,
    GroupKey,
    HourKey,
    IndicatorStore,
    IndicatorTxn,
    StoredHour,
)
from hub.logging import get_logger
from hub.messages import Reading, Rejection, StatusUpdate
from hub.ports import MaintenancePeriod

log = get_logger(__name__)

_DELAY_EDGES_MS = tuple(e * 1000 for e in DELAY_EDGES_S)
#: Hours kept in memory after their last change, besides the current one: late
#: readings of the hour just past are common (a device's store-and-forward).
CACHE_HOURS = 2
#: The updater's heartbeat in the store's meta (``hub indicators rebuild`` reads it
#: to leave the hours of a running hub alone).
HEARTBEAT_KEY = "updater_heartbeat_ms"
#: When the hours in progress were last saved; whether the last stop saved them.
OPEN_SAVED_KEY = "open_saved_ms"
CLEAN_STOP_KEY = "clean_stop"
#: Changed by every write not made by the live updater (a rebuild): the updater then
#: reads what it had kept in memory of the stored hours back from the store.
GENERATION_KEY = "generation"
#: The device-wide maintenance periods the last flush saw (to find what changed).
MAINTENANCE_KEY = "maintenance"
#: How often old device-hours and device-days are pruned.
PRUNE_EVERY_MS = HOUR_MS

MaintenanceSource = Callable[[int, int], Sequence[MaintenancePeriod]]
#: What the updater knows of a stored device-hour it wrote: figures, district, asset type.
Known = tuple[HourFigures, str, str]


@dataclass(frozen=True, slots=True)
class Retention:
    """How long device-level roll-ups are kept (district-days are kept for good)."""

    hours_ms: int = 35 * DAY_MS
    device_days_ms: int = 400 * DAY_MS


@dataclass(slots=True)
class DomainPlan:
    """What the hot path keeps per asset type for the loaded definitions."""

    metrics: Mapping[str, frozenset[str]]
    checks: Mapping[str, list[tuple[str, HoursOk]]]
    thresholds: Mapping[str, dict[str, tuple[str, float]]]

    @classmethod
    def of(cls, definitions: Iterable[IndicatorDefinition]) -> DomainPlan:
        """The plan of ``definitions``."""
        defs = list(definitions)
        by_asset: dict[str, dict[str, tuple[str, float]]] = {}
        for ind, (asset, metric, threshold) in thresholds(defs).items():
            by_asset.setdefault(asset, {})[ind] = (metric, threshold)
        return cls(domain_metrics(defs), domain_checks(defs), by_asset)


@dataclass(slots=True)
class FlushWork:
    """What one flush writes (built on the event loop, written in a worker thread)."""

    now_ms: int
    states: dict[HourKey, HourState] = field(default_factory=dict)
    devices: dict[str, DeviceRecord] = field(default_factory=dict)
    changed_devices: list[DeviceRecord] = field(default_factory=list)
    statuses: list[tuple[str, int, str]] = field(default_factory=list)
    offline: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    arrivals: dict[GroupKey, Arrivals] = field(default_factory=dict)
    rederive: dict[str, tuple[int, int]] = field(default_factory=dict)
    expected_drop: list[tuple[int, int]] = field(default_factory=list)
    #: Rebuild: rows of these devices in ``[start, end)`` not in ``states`` are emptied.
    authoritative: tuple[int, int] | None = None
    authoritative_devices: frozenset[str] | None = None
    prune: tuple[int, int] | None = None
    #: Stored device-hours to derive again (in progress at the last flush, not in memory).
    reload: list[HourKey] = field(default_factory=list)
    #: Filled by the write: device-hours derived while in progress.
    partial: set[HourKey] = field(default_factory=set)
    #: What the updater knows of stored hours (figures as it last wrote them).
    known: dict[HourKey, Known] = field(default_factory=dict)
    #: Filled by the write: what it wrote; whether someone else wrote meanwhile.
    written: dict[HourKey, Known] = field(default_factory=dict)
    generation_changed: bool = False
    saves_open: bool = False
    clean_stop: bool = False


class HourDeriver:
    """Derives device-hours inside one store transaction and collects the day deltas.

    Shared by the live flush and by ``hub indicators rebuild``.
    """

    def __init__(
        self,
        txn: IndicatorTxn,
        calendar: CityCalendar,
        plan: DomainPlan,
        maintenance: MaintenanceIndex,
        devices: Mapping[str, DeviceRecord],
        offline: Mapping[str, list[tuple[int, int]]],
        now_ms: int,
        known: Mapping[HourKey, Known] | None = None,
    ) -> None:
        self._txn = txn
        self._cal = calendar
        self._plan = plan
        self._maintenance = maintenance
        self._devices = devices
        self._offline = offline
        self._now = now_ms
        self.written: dict[HourKey, HourFigures] = {}
        #: Figures (and district, asset type) of stored hours the caller knows to be current.
        self._known: Mapping[HourKey, Known] = known or {}
        #: Hours derived while still in progress: to be derived again once over.
        self.partial: set[HourKey] = set()
        self.device_deltas: dict[DeviceDayKey, tuple[str, str, Totals]] = {}
        self.group_deltas: dict[GroupKey, Totals] = {}

    def _previous(self, device_id: str, hour_ms: int) -> tuple[int, int | None]:
        """``(carry_in, prev_seq_last)`` from the device's hours before ``hour_ms``."""
        prev_key = (device_id, hour_ms - HOUR_MS)
        figures = self.written.get(prev_key)
        if figures is None and prev_key in self._known:
            figures = self._known[prev_key][0]
        if figures is not None:
            return figures.carry, figures.seq_last
        row = self._txn.hour_before(device_id, hour_ms)
        if row is None:
            return 0, None
        carry = row.figures.carry if row.state.hour_ms == hour_ms - HOUR_MS else 0
        return carry, row.figures.seq_last

    def _masks(self, state: HourState) -> tuple[int, int]:
        device = self._devices.get(state.device_id)
        maintenance = 0
        if device is not None and self._maintenance:
            spans = self._maintenance.spans(device)
            if spans:
                maintenance = interval_mask(
                    spans, state.day_ms, state.interval_ms, state.first_slot, state.n_slots
                )
        offline = 0
        down = self._offline.get(state.device_id)
        if down:
            offline = interval_mask(
                down, state.day_ms, state.interval_ms, state.first_slot, state.n_slots
            )
        return maintenance, offline

    def apply(
        self, states: Iterable[HourState], *, old: Mapping[HourKey, StoredHour] | None = None
    ) -> None:
        """Derive and write ``states`` (and the successors their change affects), in
        device and hour order; ``old`` may hold the stored rows already read."""
        queue: list[tuple[str, int]] = []
        pending: dict[HourKey, HourState] = {}
        for s in states:
            pending[s.key] = s
            heapq.heappush(queue, s.key)
        known_old = dict(old or {})
        while queue:
            key = heapq.heappop(queue)
            state = pending.pop(key, None)
            if state is None:
                continue
            known = self._known.get(key)
            stored = known_old.pop(key, None)
            was: tuple[str, str] | None
            if known is not None and stored is None:
                before, was = known[0], (known[1], known[2])
            else:
                stored = stored or self._txn.hour(key)
                before = stored.figures if stored is not None else ZERO
                was = (stored.state.district, stored.state.asset_type) if stored else None
            carry_in, prev_seq = self._previous(*key)
            maintenance, offline = self._masks(state)
            horizon = self._horizon(state)
            if horizon is not None:
                self.partial.add(key)
            figures = derive(
                state,
                carry_in=carry_in,
                prev_seq_last=prev_seq,
                maintenance=maintenance,
                offline=offline,
                thresholds=self._plan.thresholds.get(state.asset_type),
                horizon=horizon,
            )
            self.written[key] = figures
            if was is not None and state.bits == 0 and not state.runs and figures == ZERO:
                self._txn.delete_hour(key)  # nothing left in it (a rebuild emptied it)
            elif was is not None or figures != ZERO or state.bits or state.runs:
                self._txn.put_hour(StoredHour(state, figures))
            self._delta(state, was, figures, before)
            if (figures.carry != before.carry or figures.seq_last != before.seq_last) and (
                key[1] + HOUR_MS <= self._now
            ):
                # Only a finished hour can have a successor (the next one has begun).
                self._successor(key, state, figures, pending, queue)

    def _horizon(self, state: HourState) -> int | None:
        """How many of the hour's slots have begun, or None when the hour is over."""
        if state.hour_ms + HOUR_MS <= self._now:
            return None
        first_start = state.day_ms + state.first_slot * state.interval_ms
        if self._now < first_start:
            return 0
        return min(state.n_slots, (self._now - first_start) // state.interval_ms + 1)

    def _successor(
        self,
        key: HourKey,
        state: HourState,
        figures: HourFigures,
        pending: dict[HourKey, HourState],
        queue: list[tuple[str, int]],
    ) -> None:
        device_id, hour = key
        nxt = self._txn.hour_after(device_id, hour)
        if nxt is not None and nxt.state.key not in pending:
            pending[nxt.state.key] = nxt.state
            heapq.heappush(queue, nxt.state.key)
        next_hour = hour + HOUR_MS
        if (
            figures.carry > 0
            and (nxt is None or nxt.state.hour_ms != next_hour)
            and (device_id, next_hour) not in pending
            and next_hour <= self._now
        ):
            # Availability's grace runs into an hour without readings: that hour gets
            # a row of its own (no readings, some slots up).
            empty = new_state(
                self._cal, device_id, state.district, state.asset_type, next_hour, state.interval_ms
            )
            if empty is not None:
                pending[empty.key] = empty
                heapq.heappush(queue, empty.key)

    def _delta(
        self, state: HourState, was: tuple[str, str] | None, new: HourFigures, old: HourFigures
    ) -> None:
        moved = was is not None and was != (state.district, state.asset_type)
        if new == old and not moved:
            return
        if moved:
            assert was is not None
            self._add_totals_at(was[0], was[1], state, _totals(old, -1))
            self._add_totals(state, _totals(new, 1))
            return
        delta = Totals()
        delta.add(new)
        delta.add(old, -1)
        if not delta.is_zero():
            self._add_totals(state, delta)

    def _add_totals(self, state: HourState, delta: Totals) -> None:
        self._add_totals_at(state.district, state.asset_type, state, delta)

    def _add_totals_at(self, district: str, asset: str, state: HourState, delta: Totals) -> None:
        dkey = (state.device_id, state.day_ms)
        entry = self.device_deltas.get(dkey)
        if entry is None:
            self.device_deltas[dkey] = (state.district, state.asset_type, Totals())
            entry = self.device_deltas[dkey]
        entry[2].add(delta)
        gkey = (district, asset, state.day_ms)
        got = self.group_deltas.get(gkey)
        if got is None:
            got = self.group_deltas[gkey] = Totals()
        got.add(delta)

    def finish(self) -> None:
        """Write the collected day deltas."""
        self._txn.add_days(self.device_deltas, self.group_deltas)


def _totals(figures: HourFigures, sign: int) -> Totals:
    t = Totals()
    t.add(figures, sign)
    return t


def new_state(
    calendar: CityCalendar,
    device_id: str,
    district: str,
    asset_type: str,
    hour_ms: int,
    interval_ms: int,
) -> HourState | None:
    """An empty device-hour (None when no slot of the interval starts in that hour)."""
    day = calendar.day_start(hour_ms)
    day_end = calendar.day_end(day)
    n = slots_starting_in(hour_ms, hour_ms + HOUR_MS, day, day_end, interval_ms)
    if n == 0:
        return None
    first = first_slot_of_hour(hour_ms, day, interval_ms)
    return HourState(device_id, district, asset_type, hour_ms, day, interval_ms, first, n)


def add_reading(state: HourState, r: Reading, slot: int, plan: DomainPlan) -> None:
    """Count one reading (of slot ``slot`` of its day) into its device-hour."""
    bit = 1 << (slot - state.first_slot)
    if state.bits & bit:
        state.extra += 1
    else:
        state.bits |= bit
        wanted = plan.metrics.get(r.asset_type)
        if wanted:
            stats = state.stats
            for name in wanted:
                value = r.metrics.get(name)
                if value is None or value.__class__ is bool or name in r.out_of_range:
                    continue
                cur = stats.get(name)
                if cur is None:
                    stats[name] = [1, value, value]
                else:
                    cur[0] += 1
                    cur[1] += value
                    if value > cur[2]:  # noqa: PLR1730  (max() costs a call per reading)
                        cur[2] = value
        checks = plan.checks.get(r.asset_type)
        if checks:
            values = r.metrics
            if r.out_of_range:
                values = {k: v for k, v in values.items() if k not in r.out_of_range}
            check_reading(state.checks, checks, values)
    seq = r.seq
    if seq is not None:
        runs = state.runs
        if runs and runs[-1][1] == seq - 1:
            runs[-1][1] = seq
        else:
            add_seq(runs, seq)


def asset_type_of(topic: str, district: str) -> str | None:
    """The asset type in a CONTRACT §1 topic (``…/{district}/{asset_type}/{device}/…``)."""
    parts = topic.split("/")
    if len(parts) >= 4 and parts[-4] == district and parts[-1] in ("telemetry", "status"):
        return parts[-3] or None
    return None


class IndicatorUpdater:
    """Keeps the roll-ups up to date with what the live stage sees."""

    def __init__(
        self,
        store: IndicatorStore,
        calendar: CityCalendar,
        *,
        intervals: Intervals,
        clock: Clock,
        definitions: Iterable[IndicatorDefinition] = (),
        maintenance: MaintenanceSource | None = None,
        retention: Retention | None = None,
        save_interval_ms: int = 300_000,
    ) -> None:
        self._store = store
        self._cal = calendar
        # The flush thread's own calendar: CityCalendar caches are not thread-safe.
        self._thread_cal = CityCalendar(calendar.zone_name)
        self._intervals = intervals
        self._iv_cache: dict[str, int | None] = {}
        self._clock = clock
        self._maintenance_source = maintenance
        self.retention = retention or Retention()
        self.plan = DomainPlan.of(definitions)
        self._cache: dict[HourKey, HourState] = {}
        self._dirty: set[HourKey] = set()
        self.devices: dict[str, DeviceRecord] = {d.device_id: d for d in store.devices()}
        self._changed_devices: set[str] = set()
        now = clock.now_ms()
        self._status_events: dict[str, list[tuple[int, str]]] = {}
        for device_id, ts, state in store.statuses(now - self.retention.hours_ms):
            self._status_events.setdefault(device_id, []).append((ts, state))
        self._new_statuses: list[tuple[str, int, str]] = []
        self._arrivals: dict[GroupKey, Arrivals] = {}
        self._rederive: dict[str, tuple[int, int]] = {}
        self._expected_drop: list[tuple[int, int]] = []
        self._maintenance_seen: dict[tuple[str, int, int, str], MaintenancePeriod] | None = None
        #: Device-hours last derived while in progress: derived again once their hour
        #: is over (the slots that began meanwhile count), or at the next save.
        self._open_keys: set[HourKey] = set()
        #: Figures, district and asset type of the stored hours in memory, as last
        #: written (a rebuild's write changes the store's generation: then forgotten).
        self._known: dict[HourKey, Known] = {}
        self._generation: str | None = None
        self._open_saved_ms = now
        self.save_interval_ms = save_interval_ms
        self.unsaved: tuple[int, int] | None = self._check_last_stop()
        self._pruned_ms = 0
        self._flushing = asyncio.Lock()
        #: Set while the last flush failed (health shows it); the work is kept and retried.
        self.last_error: str | None = None

    def _check_last_stop(self) -> tuple[int, int] | None:
        """After a crash, the span of readings that may be missing from the roll-ups (the
        hours in progress since their last save), said once in the log."""
        heartbeat = self._store.meta(HEARTBEAT_KEY)
        saved = self._store.meta(OPEN_SAVED_KEY)
        if heartbeat is None or saved is None or self._store.meta(CLEAN_STOP_KEY) == "1":
            return None
        lost = (int(saved), int(heartbeat))
        if lost[1] <= lost[0]:
            return None  # the last checkpoint saved everything
        log.warning(
            "the hub stopped without saving the hours in progress: readings of that span may be"
            " missing from the indicators; rebuild it from the store with"
            f" `hub indicators rebuild --start {lost[0] - HOUR_MS} --end {lost[1] + HOUR_MS}`",
            from_ms=lost[0],
            to_ms=lost[1],
        )
        return lost

    def set_definitions(self, definitions: Iterable[IndicatorDefinition]) -> None:
        """Use new definitions from now on (their domain values count from now)."""
        self.plan = DomainPlan.of(definitions)

    # ------------------------------------------------------------------ hot path

    def observe(
        self,
        readings: Sequence[Reading],
        statuses: Sequence[StatusUpdate] = (),
        rejections: Sequence[Rejection] = (),
    ) -> None:
        """Count one live batch (memory only)."""
        if readings:
            self._readings(readings)
        if statuses:
            self._statuses(statuses)
        if rejections:
            self._rejections(rejections)

    def _readings(self, readings: Sequence[Reading]) -> None:
        # The hot path: ~1-2 µs a reading. The day and hour of the last reading are
        # kept in locals (readings come in time order, mostly of the current hour),
        # and the common case of add_reading is inlined.
        cal = self._cal
        cache = self._cache
        dirty = self._dirty
        devices = self.devices
        arrivals = self._arrivals
        ivs = self._iv_cache
        plan = self.plan
        metrics_of = plan.metrics
        checks_of = plan.checks
        now = self._clock.now_ms()
        edges = _DELAY_EDGES_MS
        day_lo = day_hi = hour_lo = hour_hi = 0
        for r in readings:
            ts = r.ts_ms
            district = r.district
            asset = r.asset_type
            if not day_lo <= ts < day_hi:
                day_lo = cal.day_start(ts)
                day_hi = cal.day_end(day_lo)
            day = day_lo
            received = r.received_ms or now
            tkey = (district, asset, day)
            a = arrivals.get(tkey)
            if a is None:
                a = arrivals[tkey] = Arrivals()
            a.delays[bisect_left(edges, received - ts)] += 1
            if day <= received < day_hi:
                a.accepted += 1
            else:
                rkey = (district, asset, cal.day_start(received))
                ra = arrivals.get(rkey)
                if ra is None:
                    ra = arrivals[rkey] = Arrivals()
                ra.accepted += 1
            iv = ivs.get(asset, -1)
            if iv == -1:
                iv = ivs[asset] = self._intervals(asset)
            if iv is None:
                continue  # an asset type the catalog does not know: no declared interval
            slot = (ts - day) // iv
            slot_start = day + slot * iv
            if not hour_lo <= slot_start < hour_hi:
                hour_lo = cal.hour_start(slot_start)
                hour_hi = hour_lo + HOUR_MS
            device_id = r.device_id
            key = (device_id, hour_lo)
            state = cache.get(key)
            if state is None or state.interval_ms != iv:
                state = self._open(key, district, asset, day, iv)
            bit = 1 << (slot - state.first_slot)
            bits = state.bits
            if bits & bit:
                state.extra += 1
                seq = r.seq
                if seq is not None:
                    add_seq(state.runs, seq)
            elif asset in metrics_of or asset in checks_of:
                add_reading(state, r, slot, plan)
            else:
                state.bits = bits | bit
                seq = r.seq
                if seq is not None:
                    runs = state.runs
                    if runs and runs[-1][1] == seq - 1:
                        runs[-1][1] = seq
                    else:
                        add_seq(runs, seq)
            dirty.add(key)
            dev = devices.get(device_id)
            if (
                dev is None
                or slot_start < dev.commissioned_ms
                or dev.retired_ms is not None
                or dev.district != district
                or dev.asset_type != asset
            ):
                self._seen(device_id, district, asset, slot_start, dev)

    def _open(self, key: HourKey, district: str, asset: str, day: int, iv: int) -> HourState:
        """The device-hour ``key``: from the store the first time, else a new one."""
        stored = self._store.load_hour(key)
        state: HourState | None
        if stored is not None and stored.state.interval_ms == iv:
            state = stored.state
            state.district, state.asset_type = district, asset
        else:
            day_end = self._cal.day_end(day)
            hour = key[1]
            n = slots_starting_in(hour, hour + HOUR_MS, day, day_end, iv)
            first = first_slot_of_hour(hour, day, iv)
            state = HourState(key[0], district, asset, hour, day, iv, first, max(n, 1))
        self._cache[key] = state
        return state

    def _seen(
        self, device_id: str, district: str, asset: str, slot_start: int, dev: DeviceRecord | None
    ) -> None:
        """A new device, or one seen earlier than its commissioning, or moved, or back."""
        if dev is None:
            new = DeviceRecord(device_id, district, asset, slot_start)
        else:
            commissioned = min(dev.commissioned_ms, slot_start)
            if commissioned < dev.commissioned_ms:
                self._expected_drop.append((commissioned, dev.commissioned_ms))
            if dev.retired_ms is not None:
                self._expected_drop.append((dev.retired_ms, self._clock.now_ms() + DAY_MS))
            new = DeviceRecord(device_id, district, asset, commissioned, None)
        self.devices[device_id] = new
        self._changed_devices.add(device_id)

    def _statuses(self, statuses: Sequence[StatusUpdate]) -> None:
        now = self._clock.now_ms()
        for st in statuses:
            events = self._status_events.setdefault(st.device_id, [])
            item = (st.ts_ms, st.state)
            i = bisect_left(events, item)
            if i < len(events) and events[i] == item:
                continue  # a retained status seen again
            insort(events, item)
            self._new_statuses.append((st.device_id, st.ts_ms, st.state))
            after = events[i + 1][0] if i + 1 < len(events) else now + HOUR_MS
            lo, hi = self._rederive.get(st.device_id, (st.ts_ms, after))
            self._rederive[st.device_id] = (min(lo, st.ts_ms), max(hi, after))

    def _rejections(self, rejections: Sequence[Rejection]) -> None:
        now = self._clock.now_ms()
        for rj in rejections:
            if not rj.district:
                continue  # a rejection that names no district is no district's
            asset = asset_type_of(rj.topic, rj.district)
            if asset is None:
                continue
            key = (rj.district, asset, self._cal.day_start(rj.received_ms or now))
            a = self._arrivals.get(key)
            if a is None:
                a = self._arrivals[key] = Arrivals()
            a.rejected[rj.reason] = a.rejected.get(rj.reason, 0) + 1

    # ------------------------------------------------------------------ registry

    def sync_devices(self, known: Iterable[tuple[str, str, str, int | None]]) -> None:
        """Align the device records with the registry's devices ``(id, district, asset
        type, provisioned since ms or None)``: provisioned devices count from their
        provisioning even before their first reading; devices gone from the registry
        are retired now."""
        now = self._clock.now_ms()
        present: set[str] = set()
        for device_id, district, asset, provisioned_ms in known:
            present.add(device_id)
            dev = self.devices.get(device_id)
            if dev is None:
                if provisioned_ms is None:
                    continue  # known only once it reports
                self.devices[device_id] = DeviceRecord(device_id, district, asset, provisioned_ms)
                self._changed_devices.add(device_id)
                self._expected_drop.append((provisioned_ms, now + DAY_MS))
            elif provisioned_ms is not None and provisioned_ms < dev.commissioned_ms:
                self.devices[device_id] = DeviceRecord(
                    device_id, dev.district, dev.asset_type, provisioned_ms, dev.retired_ms
                )
                self._changed_devices.add(device_id)
                self._expected_drop.append((provisioned_ms, dev.commissioned_ms))
        for device_id, dev in list(self.devices.items()):
            if device_id not in present and dev.retired_ms is None:
                self.devices[device_id] = DeviceRecord(
                    device_id, dev.district, dev.asset_type, dev.commissioned_ms, now
                )
                self._changed_devices.add(device_id)
                self._expected_drop.append((now, now + DAY_MS))

    # ------------------------------------------------------------------ flush

    def _capture(self, *, save_open: bool = False) -> FlushWork:
        """What to write now: hours that are over (or changed by late readings) at every
        flush; the hours in progress every ``save_interval_ms``, or when ``save_open``."""
        now = self._clock.now_ms()
        work = FlushWork(now_ms=now)
        cache = self._cache
        save_open = save_open or now - self._open_saved_ms >= self.save_interval_ms
        work.saves_open = save_open
        keep: set[HourKey] = set()
        for key in self._dirty:
            if key not in cache:
                continue
            if key[1] + HOUR_MS > now and not save_open:
                keep.add(key)  # in progress: saved with the others, every save_interval
                continue
            work.states[key] = cache[key].copy()
        self._dirty = keep
        still_open: set[HourKey] = set()
        for key in self._open_keys:
            if key[1] + HOUR_MS > now and not save_open:
                still_open.add(key)
            elif key not in work.states and key not in keep:
                state = cache.get(key)
                if state is not None:
                    work.states[key] = state.copy()
                else:
                    work.reload.append(key)
        self._open_keys = still_open
        for key in work.states:
            for k in (key, (key[0], key[1] - HOUR_MS)):
                known = self._known.get(k)
                if known is not None:
                    work.known[k] = known
        work.devices = dict(self.devices)
        work.changed_devices = [self.devices[d] for d in self._changed_devices]
        self._changed_devices = set()
        work.statuses, self._new_statuses = self._new_statuses, []
        work.arrivals, self._arrivals = self._arrivals, {}
        work.rederive, self._rederive = self._rederive, {}
        work.expected_drop, self._expected_drop = self._expected_drop, []
        involved = {k[0] for k in work.states} | set(work.rederive)
        for device_id in involved:
            events = self._status_events.get(device_id)
            if events:
                work.offline[device_id] = offline_intervals(events)
        if now - self._pruned_ms >= PRUNE_EVERY_MS:
            self._pruned_ms = now
            work.prune = (now - self.retention.hours_ms, now - self.retention.device_days_ms)
        return work

    def _restore(self, work: FlushWork) -> None:
        """A failed flush: what it captured is merged back, to be written next time."""
        self._dirty.update(k for k in work.states if k in self._cache)
        self._open_keys.update(k for k in work.states if k not in self._cache)
        self._open_keys.update(work.reload)
        self._changed_devices.update(d.device_id for d in work.changed_devices)
        self._new_statuses = work.statuses + self._new_statuses
        for gkey, a in work.arrivals.items():
            got = self._arrivals.get(gkey)
            if got is None:
                self._arrivals[gkey] = a
            else:
                got.add(a)
        for device_id, (lo, hi) in work.rederive.items():
            old = self._rederive.get(device_id, (lo, hi))
            self._rederive[device_id] = (min(lo, old[0]), max(hi, old[1]))
        self._expected_drop.extend(work.expected_drop)

    async def flush(self) -> None:
        """Write what is due (store writes in a worker thread)."""
        async with self._flushing:
            work = self._capture()
            periods = self._maintenance_periods(work.now_ms)
            try:
                await asyncio.to_thread(self.write, work, periods)
            except Exception as exc:
                self._restore(work)
                self.last_error = repr(exc)
                log.exception("indicator roll-ups could not be written; kept for the next try")
                return
            self.last_error = None
            self._written(work)

    def flush_now(self, *, stopping: bool = False, save_open: bool = True) -> None:
        """Write what is due, blocking; with ``save_open`` the hours in progress too (a
        stopping hub: then it is recorded that nothing was left unsaved)."""
        work = self._capture(save_open=save_open or stopping)
        work.clean_stop = stopping
        self.write(work, self._maintenance_periods(work.now_ms))
        self._written(work)

    def _written(self, work: FlushWork) -> None:
        """After a successful write: what is known of the stored hours, what is left open."""
        self._open_keys |= work.partial
        if work.saves_open:
            self._open_saved_ms = work.now_ms
        if work.generation_changed:
            self._known = {}
        for key, known in work.written.items():
            if key in self._cache:
                self._known[key] = known
        self._evict(work.now_ms)

    def _maintenance_periods(self, now: int) -> list[MaintenancePeriod]:
        if self._maintenance_source is None:
            return []
        return list(self._maintenance_source(now - self.retention.device_days_ms, now + DAY_MS))

    def _evict(self, now: int) -> None:
        horizon = self._cal.hour_start(now) - CACHE_HOURS * HOUR_MS
        for key in [k for k in self._cache if k[1] < horizon and k not in self._dirty]:
            del self._cache[key]
            self._known.pop(key, None)
        cutoff = now - self.retention.hours_ms
        for device_id, events in list(self._status_events.items()):
            keep = [e for e in events if e[0] >= cutoff]
            if len(keep) < len(events):
                # the last message before the cut still says how the device starts
                keep.insert(0, max(e for e in events if e[0] < cutoff))
                self._status_events[device_id] = keep

    def write(self, work: FlushWork, periods: Sequence[MaintenancePeriod]) -> None:
        """Write ``work`` in one transaction (runs in a worker thread)."""
        cal = self._thread_cal
        maintenance = MaintenanceIndex(periods)
        with self._store.transaction() as txn:
            generation = txn.meta(GENERATION_KEY)
            if generation != self._generation:
                work.known = {}
                work.generation_changed = True
            if work.changed_devices:
                txn.put_devices(work.changed_devices)
            if work.statuses:
                txn.add_statuses(work.statuses)
            self._maintenance_changes(work, periods, txn)
            for lo, hi in work.expected_drop:
                txn.drop_expected(cal.day_start(lo), hi)
            deriver = HourDeriver(
                txn,
                cal,
                self.plan,
                maintenance,
                work.devices,
                work.offline,
                work.now_ms,
                known=work.known,
            )
            states = dict(work.states)
            old = self._add_rederive(work, states, cal)
            for key in work.reload:
                row = txn.hour(key)
                if row is not None and key not in states:
                    old[key] = row
                    states[key] = row.state
            deriver.apply(states.values(), old=old)
            deriver.finish()
            work.partial = deriver.partial
            work.written = {
                key: (figures, states[key].district, states[key].asset_type)
                for key, figures in deriver.written.items()
                if key in states
            }
            if work.arrivals:
                txn.add_arrivals(work.arrivals)
            fill_expected(
                txn,
                cal,
                work.devices.values(),
                self._intervals,
                maintenance,
                work.now_ms,
                since_ms=work.now_ms - self.retention.device_days_ms,
            )
            txn.set_meta(HEARTBEAT_KEY, str(work.now_ms))
            if work.saves_open:
                txn.set_meta(OPEN_SAVED_KEY, str(work.now_ms))
            txn.set_meta(CLEAN_STOP_KEY, "1" if work.clean_stop else "0")
        self._generation = generation
        if work.prune is not None:
            removed = self._store.prune(*work.prune)
            if removed:
                log.info("old device roll-ups pruned", rows=removed)

    def _add_rederive(
        self, work: FlushWork, states: dict[HourKey, HourState], cal: CityCalendar
    ) -> dict[HourKey, StoredHour]:
        """Add the stored hours to derive again (statuses, maintenance) to ``states``;
        returns the stored rows read."""
        old: dict[HourKey, StoredHour] = {}
        for device_id, (lo, hi) in work.rederive.items():
            start = max(cal.hour_start(lo), work.now_ms - self.retention.hours_ms)
            for row in self._store.hours(start, hi, [device_id]):
                old[row.state.key] = row
                states.setdefault(row.state.key, row.state)
        return old

    def _maintenance_changes(
        self, work: FlushWork, periods: Sequence[MaintenancePeriod], txn: IndicatorTxn
    ) -> None:
        """A silence or window added, changed or ended early since the last flush (or
        the last run: the list is kept in the store): the device-hours it covers are
        derived again and the expected slots of its days computed again."""
        now_seen = {_fingerprint(p): p for p in periods}
        before = self._maintenance_seen
        if before is None:
            before = _decode_periods(self._store.meta(MAINTENANCE_KEY))
        self._maintenance_seen = now_seen
        changed = [p for k, p in {**before, **now_seen}.items() if (k in before) != (k in now_seen)]
        if changed or before.keys() != now_seen.keys():
            txn.set_meta(MAINTENANCE_KEY, _encode_periods(now_seen.values()))
        if not changed:
            return
        floor = work.now_ms - self.retention.hours_ms
        cal = self._thread_cal
        for p in changed:
            txn.drop_expected(cal.day_start(p.starts_ms), p.ends_ms)
        index = MaintenanceIndex(changed)
        for device in work.devices.values():
            for a, hi in index.spans(device):
                if hi <= floor:
                    continue
                lo = max(a, floor)
                old = work.rederive.get(device.device_id, (lo, hi))
                work.rederive[device.device_id] = (min(lo, old[0]), max(hi, old[1]))


def _fingerprint(p: MaintenancePeriod) -> tuple[str, int, int, str]:
    return (p.origin, p.starts_ms, p.ends_ms, repr(sorted(p.matchers.items())))


def _encode_periods(periods: Iterable[MaintenancePeriod]) -> str:
    return orjson.dumps(
        [[p.origin, p.starts_ms, p.ends_ms, dict(p.matchers)] for p in periods]
    ).decode()


def _decode_periods(text: str | None) -> dict[tuple[str, int, int, str], MaintenancePeriod]:
    if not text:
        return {}
    try:
        items = orjson.loads(text)
        periods = [MaintenancePeriod(m, a, b, origin) for origin, a, b, m in items]
    except (orjson.JSONDecodeError, TypeError, ValueError):
        return {}
    return {_fingerprint(p): p for p in periods}


def fill_expected(
    txn: IndicatorTxn,
    calendar: CityCalendar,
    devices: Iterable[DeviceRecord],
    intervals: Intervals,
    maintenance: MaintenanceIndex,
    now_ms: int,
    *,
    since_ms: int,
) -> int:
    """Cache the expected slots of closed days not cached yet (from the first
    commissioning on, and not before ``since_ms``); returns how many days were computed."""
    devs = list(devices)
    if not devs:
        return 0
    first = calendar.day_start(max(since_ms, min(d.commissioned_ms for d in devs)))
    today = calendar.day_start(now_ms)
    cached = txn.cached_days(first, today)
    done = 0
    for day in calendar.days(first, today):
        if day in cached:
            continue
        day_end = calendar.day_end(day)
        txn.put_expected(
            day, expected_by_group(devs, calendar, day, day_end - 1, intervals, maintenance)
        )
        done += 1
    return done
