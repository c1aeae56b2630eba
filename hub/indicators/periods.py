"""The city's calendar: local hours, days, ISO weeks and months as epoch milliseconds,
and the slots of a device's declared reporting interval.

Every indicator period is a period of the city's time zone (``HUB_INDICATORS__TIMEZONE``,
an IANA name read with :mod:`zoneinfo`): a day is local midnight to local midnight, so
the day of a spring DST change lasts 23 hours and the autumn one 25; a week starts on
Monday (ISO 8601); a month on its first day. Boundaries are computed, never assumed
to be 24 h apart.

**Slots.** A device that declares an interval ``iv`` in the catalog is expected to
send one reading per slot: slot ``k`` of a local day starts at ``midnight + k*iv``
(the last slot of a day may be shorter when ``iv`` does not divide the day). For the
intervals of the catalog (60 s, 300 s) slots fall on whole minutes and every local
hour holds the same number of them. A slot belongs to the hour and the day in which
it starts; a reading counts in the slot its ``ts`` falls in.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

Period = Literal["day", "week", "month"]
PERIODS: tuple[Period, ...] = ("day", "week", "month")

HOUR_MS = 3_600_000
DAY_MS = 86_400_000
#: Queries and reports reach at most this far (2200-01-01T00:00Z): a calendar of the
#: far future names nothing, and datetime's range ends in year 9999.
LATEST_MS = 7_258_118_400_000


def check_zone(name: str) -> str:
    """``name`` when it is a time zone zoneinfo knows; ValueError otherwise."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (an IANA name, e.g. Europe/Paris)") from None
    return name


class CityCalendar:
    """Local periods of one time zone; ``hour_start``/``day_start`` are cached for the
    hot path (readings arrive in time order, mostly within the current hour)."""

    def __init__(self, zone: str = "UTC") -> None:
        self.zone_name = check_zone(zone)
        self.zone = ZoneInfo(zone)
        self._hour_lo = self._hour_hi = 0
        self._day_lo = self._day_hi = 0

    # ------------------------------------------------------------------ conversions

    def local(self, ts_ms: int) -> datetime:
        """The local wall-clock time of ``ts_ms`` (fold set for the repeated hour)."""
        return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).astimezone(self.zone)

    def _epoch(self, local: datetime) -> int:
        return int(local.timestamp() * 1000)

    def midnight(self, day: date) -> int:
        """Epoch ms of the first instant of local ``day`` (midnight, or the end of a DST
        gap that swallowed it)."""
        # A midnight inside a DST gap does not exist; zoneinfo reads it with the old
        # offset, which lands after the gap: that instant is the day's first.
        return self._epoch(datetime(day.year, day.month, day.day, tzinfo=self.zone))

    # ------------------------------------------------------------------ hours and days

    def hour_start(self, ts_ms: int) -> int:
        """Epoch ms of the start of the local hour holding ``ts_ms``."""
        if self._hour_lo <= ts_ms < self._hour_hi:
            return self._hour_lo
        local = self.local(ts_ms)
        start = self._epoch(local.replace(minute=0, second=0, microsecond=0))
        if start > ts_ms:  # a zone whose offset is not whole hours, crossing a change
            start -= HOUR_MS
        self._hour_lo, self._hour_hi = start, start + HOUR_MS
        return start

    def day_start(self, ts_ms: int) -> int:
        """Epoch ms of the local midnight that starts the day holding ``ts_ms``."""
        if self._day_lo <= ts_ms < self._day_hi:
            return self._day_lo
        day = self.local(ts_ms).date()
        start = self.midnight(day)
        if start > ts_ms:  # in a DST gap at midnight: the day began at the gap's end
            day -= timedelta(days=1)
            start = self.midnight(day)
        self._day_lo, self._day_hi = start, self.midnight(day + timedelta(days=1))
        return start

    def day_end(self, day_ms: int) -> int:
        """Epoch ms of the midnight after the local day starting at ``day_ms``."""
        self.day_start(day_ms)
        return self._day_hi

    def days(self, start_ms: int, end_ms: int) -> list[int]:
        """Starts of the local days overlapping ``[start_ms, end_ms)``."""
        out: list[int] = []
        if end_ms <= start_ms:
            return out
        day = self.day_start(start_ms)
        while day < end_ms:
            out.append(day)
            day = self.day_end(day)
        return out

    # ------------------------------------------------------------------ periods

    def period_start(self, period: Period, ts_ms: int) -> int:
        """Epoch ms of the start of the local day, ISO week or month holding ``ts_ms``."""
        day = self.local(self.day_start(ts_ms)).date()
        if period == "week":
            day -= timedelta(days=day.weekday())
        elif period == "month":
            day = day.replace(day=1)
        return self.midnight(day)

    def period_end(self, period: Period, start_ms: int) -> int:
        """Epoch ms of the start of the period after the one starting at ``start_ms``."""
        day = self.local(self.period_start(period, start_ms)).date()
        if period == "day":
            nxt = day + timedelta(days=1)
        elif period == "week":
            nxt = day + timedelta(days=7)
        else:
            nxt = (day.replace(day=28) + timedelta(days=4)).replace(day=1)
        return self.midnight(nxt)

    def periods(self, period: Period, start_ms: int, end_ms: int) -> list[tuple[int, int]]:
        """``(start, end)`` of every period overlapping ``[start_ms, end_ms)``, in order."""
        out: list[tuple[int, int]] = []
        if end_ms <= start_ms:
            return out
        p = self.period_start(period, start_ms)
        while p < end_ms:
            nxt = self.period_end(period, p)
            out.append((p, nxt))
            p = nxt
        return out

    def label(self, period: Period, start_ms: int) -> str:
        """A period as people write it: ``2026-03-29``, ``2026-W13``, ``2026-03``."""
        day = self.local(start_ms).date()
        if period == "day":
            return day.isoformat()
        if period == "week":
            year, week, _ = day.isocalendar()
            return f"{year}-W{week:02d}"
        return f"{day.year}-{day.month:02d}"


# ---------------------------------------------------------------------- slots


def slots_in_day(day_ms: int, day_end_ms: int, interval_ms: int) -> int:
    """How many slots of ``interval_ms`` start in the local day ``[day_ms, day_end_ms)``."""
    return math.ceil((day_end_ms - day_ms) / interval_ms)


def slot_index(ts_ms: int, day_ms: int, interval_ms: int) -> int:
    """The index (within its local day) of the slot ``ts_ms`` falls in."""
    return (ts_ms - day_ms) // interval_ms


def first_slot_of_hour(hour_ms: int, day_ms: int, interval_ms: int) -> int:
    """Index of the first slot of the day that starts at or after ``hour_ms``."""
    return -((day_ms - hour_ms) // interval_ms)  # ceil((hour - day) / iv)


def slots_starting_in(
    lo_ms: int, hi_ms: int, day_ms: int, day_end_ms: int, interval_ms: int
) -> int:
    """How many slots of the day starting at ``day_ms`` start in ``[lo_ms, hi_ms)``."""
    lo, hi = max(lo_ms, day_ms), min(hi_ms, day_end_ms)
    if hi <= lo:
        return 0
    first = -((day_ms - lo) // interval_ms)  # first index whose start >= lo
    last = -((day_ms - hi) // interval_ms)  # first index whose start >= hi
    return max(0, last - first)
