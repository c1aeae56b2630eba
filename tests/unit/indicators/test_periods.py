"""The city's calendar: local days, ISO weeks and months as epoch ms, across DST changes."""

from __future__ import annotations

from datetime import datetime
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.indicators.periods import (
    HOUR_MS,
    CityCalendar,
    first_slot_of_hour,
    slots_in_day,
    slots_starting_in,
)

PARIS = ZoneInfo("Europe/Paris")


def local_ms(*parts: int, zone: ZoneInfo = PARIS) -> int:
    return int(datetime(*parts, tzinfo=zone).timestamp() * 1000)  # type: ignore[misc]


def test_spring_forward_day_has_23_hours_and_autumn_25() -> None:
    """The days of the DST changes in Paris last 23 and 25 hours; their neighbours 24."""
    cal = CityCalendar("Europe/Paris")
    spring = local_ms(2026, 3, 29)
    assert cal.day_start(spring + 5 * HOUR_MS) == spring
    assert cal.day_end(spring) - spring == 23 * HOUR_MS
    autumn = local_ms(2026, 10, 25)
    assert cal.day_end(autumn) - autumn == 25 * HOUR_MS
    assert cal.day_end(local_ms(2026, 3, 28)) - local_ms(2026, 3, 28) == 24 * HOUR_MS


def test_march_is_one_hour_short_and_its_periods_tile() -> None:
    """The month of March 2026 in Paris is 31 days less an hour; its weeks are ISO weeks."""
    cal = CityCalendar("Europe/Paris")
    start = local_ms(2026, 3, 1)
    end = local_ms(2026, 4, 1)
    assert cal.period_start("month", start + 40 * 86_400_000 // 2) == start
    assert cal.period_end("month", start) == end
    assert end - start == 31 * 24 * HOUR_MS - HOUR_MS
    weeks = cal.periods("week", start, end)
    assert weeks[0][0] == local_ms(2026, 2, 23)  # the Monday before March 1st (a Sunday)
    assert all(a[1] == b[0] for a, b in pairwise(weeks))
    assert [cal.label("week", w[0]) for w in weeks][:2] == ["2026-W09", "2026-W10"]
    assert cal.label("month", start) == "2026-03"
    days = cal.days(start, end)
    assert len(days) == 31
    assert days[28] == local_ms(2026, 3, 29)


def test_hours_follow_local_time_in_a_half_hour_zone() -> None:
    """In India (+05:30) a local hour starts at :30 UTC."""
    cal = CityCalendar("Asia/Kolkata")
    ts = local_ms(2026, 5, 4, 10, 45, zone=ZoneInfo("Asia/Kolkata"))
    assert cal.hour_start(ts) == local_ms(2026, 5, 4, 10, zone=ZoneInfo("Asia/Kolkata"))
    assert (cal.hour_start(ts) // 60_000) % 60 == 30


def test_unknown_zone_is_refused() -> None:
    """A zone zoneinfo does not know is a ValueError naming it."""
    with pytest.raises(ValueError, match="Mars/Olympus"):
        CityCalendar("Mars/Olympus")


ZONES = st.sampled_from(
    ["UTC", "Europe/Paris", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]
)
TIMES = st.integers(min_value=1_700_000_000_000, max_value=1_900_000_000_000)


@given(ZONES, TIMES, st.sampled_from(["day", "week", "month"]))
def test_every_instant_is_in_exactly_the_period_that_holds_it(
    zone: str, ts: int, period: str
) -> None:
    """period_start <= ts < period_end, and the next period starts where this one ends."""
    cal = CityCalendar(zone)
    start = cal.period_start(period, ts)  # type: ignore[arg-type]
    end = cal.period_end(period, start)  # type: ignore[arg-type]
    assert start <= ts < end
    assert cal.period_start(period, end) == end  # type: ignore[arg-type]
    assert cal.period_start(period, end - 1) == start  # type: ignore[arg-type]


@given(ZONES, TIMES)
def test_hours_nest_in_days(zone: str, ts: int) -> None:
    """The hour holding an instant starts within its day and lasts at most an hour."""
    cal = CityCalendar(zone)
    hour = cal.hour_start(ts)
    day = cal.day_start(ts)
    assert day <= hour <= ts < hour + HOUR_MS


@given(
    st.integers(min_value=0, max_value=26 * HOUR_MS),
    st.integers(min_value=10_000, max_value=4 * HOUR_MS),
    st.integers(min_value=-HOUR_MS, max_value=26 * HOUR_MS),
    st.integers(min_value=0, max_value=26 * HOUR_MS),
)
def test_slot_counting_matches_enumeration(day_len: int, iv: int, lo: int, width: int) -> None:
    """Slots starting in a span, counted by arithmetic, equal those enumerated one by one."""
    day, day_end = 1_000_000, 1_000_000 + day_len
    n = slots_in_day(day, day_end, iv)
    starts = [day + k * iv for k in range(n)]
    a, b = day + lo, day + lo + width
    assert slots_starting_in(a, b, day, day_end, iv) == sum(1 for s in starts if a <= s < b)
    hour = day + (lo // HOUR_MS) * HOUR_MS
    first = first_slot_of_hour(hour, day, iv)
    assert day + first * iv >= hour
    assert first == 0 or day + (first - 1) * iv < hour
