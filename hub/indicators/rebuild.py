"""``hub indicators rebuild --start T``: the roll-ups recomputed from stored history.

History comes from the telemetry store (``TelemetryStore.history``, in time order)
and is accumulated exactly as the live updater does, a few hours at a time; each
chunk replaces the device-hours of its time range in one transaction, and the
difference to what was stored goes to the device-days and district-days, so the
sums stay right whatever was there before. Device-hours of the range with no
stored reading are emptied. Arrival delays and rejections are not in the store
(it keeps neither arrival times nor refused messages): they keep their live counts.
Status messages and maintenance periods are those the hub recorded.

Rebuilding the hours a running hub is filling would race its updater, so while the
updater's heartbeat is fresh the range ends where its in-memory hours begin.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from hub.indicators.fleet import Intervals, MaintenanceIndex
from hub.indicators.periods import (
    HOUR_MS,
    CityCalendar,
    first_slot_of_hour,
    slots_starting_in,
)
from hub.indicators.rollup import HourState, offline_intervals
from hub.indicators.store import DeviceRecord, HourKey, IndicatorStore
from hub.indicators.updater import (
    CACHE_HOURS,
    GENERATION_KEY,
    HEARTBEAT_KEY,
    DomainPlan,
    HourDeriver,
    add_reading,
    fill_expected,
)
from hub.messages import Reading
from hub.ports import MaintenancePeriod

#: Hours of history accumulated before they are written.
CHUNK_HOURS = 6
#: A heartbeat younger than this means the hub is running.
LIVE_HEARTBEAT_MS = 120_000


@dataclass(frozen=True, slots=True)
class RebuildReport:
    """What a rebuild did."""

    start_ms: int
    end_ms: int
    readings: int
    hours: int
    devices: int


def rebuild_end(
    store: IndicatorStore, calendar: CityCalendar, end_ms: int, now_ms: int
) -> tuple[int, bool]:
    """The end of the range to rebuild: ``end_ms`` on a whole hour, before the hours a
    running hub keeps in memory; and whether it was cut short for that."""
    end = calendar.hour_start(end_ms - 1) + HOUR_MS
    heartbeat = store.meta(HEARTBEAT_KEY)
    if heartbeat is not None and now_ms - int(heartbeat) < LIVE_HEARTBEAT_MS:
        live = calendar.hour_start(now_ms) - CACHE_HOURS * HOUR_MS
        if end > live:
            return live, True
    return end, False


async def rebuild(
    store: IndicatorStore,
    history: AsyncIterator[Reading],
    calendar: CityCalendar,
    *,
    intervals: Intervals,
    plan: DomainPlan,
    maintenance: Sequence[MaintenancePeriod],
    start_ms: int,
    end_ms: int,
    now_ms: int,
) -> RebuildReport:
    """Recompute the device-hours of ``[start_ms, end_ms)`` (whole hours) from ``history``."""
    start = calendar.hour_start(start_ms)
    devices = {d.device_id: d for d in store.devices()}
    changed: dict[str, DeviceRecord] = {}
    offline: dict[str, list[tuple[int, int]]] = {}
    events: dict[str, list[tuple[int, str]]] = {}
    for device_id, at, said in store.statuses(0):
        events.setdefault(device_id, []).append((at, said))
    for device_id, evs in events.items():
        offline[device_id] = offline_intervals(evs)
    index = MaintenanceIndex(maintenance)
    chunk_start = start
    chunk_end = min(end_ms, chunk_start + CHUNK_HOURS * HOUR_MS)
    states: dict[HourKey, HourState] = {}
    readings = hours = 0

    def write(lo: int, hi: int) -> None:
        nonlocal hours
        mine = {k: s for k, s in states.items() if lo <= k[1] < hi}
        with store.transaction() as txn:
            txn.set_meta(GENERATION_KEY, uuid.uuid4().hex)  # the live updater re-reads
            if changed:
                txn.put_devices(list(changed.values()))
                for d in changed.values():
                    txn.drop_expected(calendar.day_start(d.commissioned_ms), hi)
                changed.clear()
            old = {}
            for row in store.hours(lo, hi):
                old[row.state.key] = row
                if row.state.key not in mine:
                    empty = row.state.copy()
                    empty.bits, empty.extra, empty.runs = 0, 0, []
                    empty.stats, empty.checks = {}, {}
                    mine[row.state.key] = empty
            deriver = HourDeriver(txn, calendar, plan, index, devices, offline, now_ms)
            deriver.apply(mine.values(), old=old)
            deriver.finish()
        hours += len(mine)
        for key in [k for k in states if lo <= k[1] < hi]:
            del states[key]

    ivs: dict[str, int | None] = {}
    day_lo = day_hi = hour_lo = hour_hi = 0
    async for r in history:
        ts = r.ts_ms
        if ts < start or ts >= end_ms:
            continue
        while ts >= chunk_end:
            write(chunk_start, chunk_end)
            chunk_start, chunk_end = chunk_end, min(end_ms, chunk_end + CHUNK_HOURS * HOUR_MS)
        readings += 1
        asset = r.asset_type
        iv = ivs.get(asset, -1)
        if iv == -1:
            iv = ivs[asset] = intervals(asset)
        if iv is None:
            continue
        if not day_lo <= ts < day_hi:
            day_lo = calendar.day_start(ts)
            day_hi = calendar.day_end(day_lo)
        slot = (ts - day_lo) // iv
        slot_start = day_lo + slot * iv
        if not hour_lo <= slot_start < hour_hi:
            hour_lo = calendar.hour_start(slot_start)
            hour_hi = hour_lo + HOUR_MS
        key = (r.device_id, hour_lo)
        state = states.get(key)
        if state is None:
            n = slots_starting_in(hour_lo, hour_hi, day_lo, day_hi, iv)
            state = states[key] = HourState(
                r.device_id,
                r.district,
                asset,
                hour_lo,
                day_lo,
                iv,
                first_slot_of_hour(hour_lo, day_lo, iv),
                max(n, 1),
            )
            dev = devices.get(r.device_id)
            if dev is None or slot_start < dev.commissioned_ms:
                new = DeviceRecord(
                    r.device_id,
                    r.district,
                    asset,
                    slot_start if dev is None else min(dev.commissioned_ms, slot_start),
                    None if dev is None else dev.retired_ms,
                )
                devices[r.device_id] = changed[r.device_id] = new
        add_reading(state, r, slot, plan)
    while chunk_start < end_ms:
        write(chunk_start, chunk_end)
        chunk_start, chunk_end = chunk_end, min(end_ms, chunk_end + CHUNK_HOURS * HOUR_MS)
    with store.transaction() as txn:
        txn.drop_expected(calendar.day_start(start), end_ms)
        fill_expected(txn, calendar, devices.values(), intervals, index, now_ms, since_ms=start)
    return RebuildReport(start, end_ms, readings, hours, len(devices))
