"""When each device is expected to report: commissioning, maintenance, expected slots.

A device is **in service** from its commissioning (the earlier of its provisioning
and its first reading's slot) until it is retired (deleted from the registry),
except while a **maintenance period** covers it: a silence or an occurrence of a
recurring maintenance window (``rules/routes.yaml``) whose matchers name devices
only (``district``, ``asset_type``, ``source``/``device_id``; see
:data:`hub.ports.DEVICE_MATCHER_KEYS`) and match it. Its **expected readings** are
the slots of its declared interval that start while it is in service and have
ended by the time of the question.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Mapping, Sequence

from hub.indicators.periods import CityCalendar, slots_starting_in
from hub.indicators.rollup import subtract
from hub.indicators.store import DeviceRecord
from hub.ports import MaintenancePeriod

Intervals = Callable[[str], int | None]


def matches(period: MaintenancePeriod, device: DeviceRecord) -> bool:
    """True when the period's matchers (all device-wide) match ``device``."""
    if not period.device_wide:
        return False
    labels = {
        "district": device.district,
        "asset_type": device.asset_type,
        "source": device.device_id,
        "device_id": device.device_id,
    }
    for key, want in period.matchers.items():
        options = [want] if isinstance(want, str) else list(want)
        if not any(fnmatch.fnmatchcase(labels[key], w) for w in options):
            return False
    return True


class MaintenanceIndex:
    """Maintenance spans per device, for one flush or one query."""

    def __init__(self, periods: Iterable[MaintenancePeriod]) -> None:
        self._periods = [p for p in periods if p.device_wide and p.ends_ms > p.starts_ms]
        self._cache: dict[str, list[tuple[int, int]]] = {}

    def spans(self, device: DeviceRecord) -> list[tuple[int, int]]:
        """``[start, end)`` spans (possibly overlapping) covering ``device``."""
        got = self._cache.get(device.device_id)
        if got is None:
            got = self._cache[device.device_id] = [
                (p.starts_ms, p.ends_ms) for p in self._periods if matches(p, device)
            ]
        return got

    def __bool__(self) -> bool:
        return bool(self._periods)

    def within(self, start_ms: int, end_ms: int) -> MaintenanceIndex:
        """The index of the periods overlapping ``[start_ms, end_ms)`` only."""
        return MaintenanceIndex(
            p for p in self._periods if p.starts_ms < end_ms and p.ends_ms > start_ms
        )


def fingerprint(periods: Iterable[MaintenancePeriod]) -> set[tuple[str, int, int, str]]:
    """What identifies the device-wide maintenance (to see what changed between flushes)."""
    return {
        (p.origin, p.starts_ms, p.ends_ms, repr(sorted(p.matchers.items())))
        for p in periods
        if p.device_wide
    }


def in_service(
    device: DeviceRecord, start_ms: int, end_ms: int, maintenance: Sequence[tuple[int, int]]
) -> list[tuple[int, int]]:
    """The spans of ``[start_ms, end_ms)`` in which ``device`` is in service."""
    lo = max(start_ms, device.commissioned_ms)
    hi = end_ms if device.retired_ms is None else min(end_ms, device.retired_ms)
    if hi <= lo:
        return []
    return subtract((lo, hi), maintenance) if maintenance else [(lo, hi)]


def expected_slots(
    device: DeviceRecord,
    day_ms: int,
    day_end_ms: int,
    interval_ms: int,
    until_ms: int,
    maintenance: Sequence[tuple[int, int]],
) -> int:
    """Slots of the day ``[day_ms, day_end_ms)`` the device is expected to fill by
    ``until_ms``: those that start in service, at or before ``until_ms``.

    The slot in progress counts (its reading may still come): a figure for the day
    so far may be a slot low per device, but a device never reaches more than 100 %.
    """
    horizon = min(day_end_ms, until_ms + 1)
    return sum(
        slots_starting_in(a, b, day_ms, day_end_ms, interval_ms)
        for a, b in in_service(device, day_ms, horizon, maintenance)
    )


def expected_by_group(
    devices: Iterable[DeviceRecord],
    calendar: CityCalendar,
    day_ms: int,
    until_ms: int,
    intervals: Intervals,
    maintenance: MaintenanceIndex,
) -> dict[tuple[str, str], int]:
    """Expected slots of one local day per (district, asset type), up to ``until_ms``.

    Devices in service the whole day with no maintenance are counted per group and
    interval and multiplied out (the common case: 10,000 devices in milliseconds).
    """
    day_end = calendar.day_end(day_ms)
    today = maintenance.within(day_ms, day_end) if maintenance else maintenance
    out: dict[tuple[str, str], int] = {}
    whole: dict[tuple[str, str, int], int] = {}
    for device in devices:
        iv = intervals(device.asset_type)
        if iv is None or device.commissioned_ms > min(day_end - 1, until_ms):
            continue
        retired = device.retired_ms
        if retired is not None and retired <= day_ms:
            continue
        spans = today.spans(device) if today else ()
        if (
            not spans
            and device.commissioned_ms <= day_ms
            and (retired is None or retired >= day_end)
        ):
            gkey = (device.district, device.asset_type, iv)
            whole[gkey] = whole.get(gkey, 0) + 1
            continue
        n = expected_slots(device, day_ms, day_end, iv, until_ms, spans)
        if n:
            key = (device.district, device.asset_type)
            out[key] = out.get(key, 0) + n
    horizon = min(day_end, until_ms + 1)
    for (district, asset, iv), count in whole.items():
        n = slots_starting_in(day_ms, horizon, day_ms, day_end, iv) * count
        if n:
            out[(district, asset)] = out.get((district, asset), 0) + n
    return out


def interval_ms_of(interval_s: Callable[[str], float | None]) -> Intervals:
    """The catalog's interval per asset type in whole milliseconds (cached)."""
    cache: dict[str, int | None] = {}

    def get(asset_type: str) -> int | None:
        if asset_type not in cache:
            s = interval_s(asset_type)
            cache[asset_type] = max(1, round(s * 1000)) if s is not None and s > 0 else None
        return cache[asset_type]

    return get


def by_device(devices: Iterable[DeviceRecord]) -> Mapping[str, DeviceRecord]:
    """Devices by id."""
    return {d.device_id: d for d in devices}
