"""rate_of_change: absolute and percent change over a window, boundaries, gaps, late data."""

from __future__ import annotations

from collections.abc import Callable

from rules_helpers import Driver

from hub.messages import RuleState

RISE = """
rules:
  - id: rising
    kind: rate_of_change
    metric: water_level_m
    window: 1h
    op: ">="
    value: 0.5
    clear: 0.3
    severity: warning
"""

DROP = """
rules:
  - id: drop
    kind: rate_of_change
    metric: pressure_bar
    window: 3m
    mode: percent
    op: "<="
    value: -30
    severity: warning
"""


def test_rise_of_exactly_the_limit_within_the_window_fires(drive: Callable[..., Driver]) -> None:
    """0.5 m within 1h (>= 0.5) fires; the explanation names the change and window."""
    d = drive(RISE)
    d.read(0, water_level_m=1.0)
    assert d.read(1800, water_level_m=1.4) == []
    evs = d.read(3600, water_level_m=1.5)
    assert [e.state for e in evs] == [RuleState.FIRING]
    assert evs[0].explanation.observed["change"] == 0.5
    assert "within 1h" in evs[0].explanation.summary


def test_change_older_than_the_window_does_not_count(drive: Callable[..., Driver]) -> None:
    """A 0.6 m rise spread over 2 h is 0.3 m per window: no alert."""
    d = drive(RISE)
    for i in range(13):
        d.read(i * 600, water_level_m=1.0 + 0.05 * i)
    assert d.fired("rising") == []


def test_hysteresis_on_the_change(drive: Callable[..., Driver]) -> None:
    """Firing at +0.5; a change of +0.4 keeps it (clear 0.3); +0.2 resolves."""
    d = drive(RISE)
    d.read(0, water_level_m=1.0)
    d.read(600, water_level_m=1.6)
    assert d.read(1200, water_level_m=1.4) == []  # change 0.4 from the 0 s sample
    evs = d.read(1800, water_level_m=1.2)
    assert [e.state for e in evs] == [RuleState.RESOLVED]


def test_percent_drop_in_one_interval(drive: Callable[..., Driver]) -> None:
    """Pressure 4.0 -> 2.8 bar is exactly -30 %: fires; a first reading alone decides nothing."""
    d = drive(DROP)
    assert d.read(0, asset_type="water_main", pressure_bar=4.0) == []
    evs = d.read(60, asset_type="water_main", pressure_bar=2.8)
    assert [e.state for e in evs] == [RuleState.FIRING]
    assert round(evs[0].explanation.observed["change"], 6) == -30.0


def test_percent_from_zero_is_undecided(drive: Callable[..., Driver]) -> None:
    """A percent change from a 0 baseline is undefined: no alert, no crash."""
    d = drive(DROP)
    d.read(0, asset_type="water_main", pressure_bar=0.0)
    assert d.read(60, asset_type="water_main", pressure_bar=5.0) == []


def test_gap_longer_than_window_restarts_the_baseline(drive: Callable[..., Driver]) -> None:
    """After a 10-minute gap (> 3m window) the old sample is no baseline: no false drop."""
    d = drive(DROP)
    d.read(0, asset_type="water_main", pressure_bar=4.0)
    assert d.read(600, asset_type="water_main", pressure_bar=2.0) == []
    assert d.fired("drop") == []


def test_late_sample_joins_the_window(drive: Callable[..., Driver]) -> None:
    """A late (out-of-order) high sample becomes the baseline of a later drop."""
    d = drive(DROP)
    d.read(120, asset_type="water_main", pressure_bar=3.9)
    d.read(60, asset_type="water_main", pressure_bar=6.0)  # late, within tolerance
    evs = d.read(180, asset_type="water_main", pressure_bar=3.9)
    assert [e.state for e in evs] == [RuleState.FIRING]


def test_window_memory_is_bounded_at_high_rates(drive: Callable[..., Driver]) -> None:
    """One reading a second for an hour keeps at most max_samples+1 samples."""
    d = drive(RISE)
    for i in range(3600):
        d.read(i, water_level_m=1.0)
    series = d.engine._kinds["rising"].series["d01/g1"]
    assert len(series.aux) <= 121
