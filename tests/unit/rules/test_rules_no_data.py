"""no_data: timer-driven silence detection, expected-interval defaults, resolution."""

from __future__ import annotations

from collections.abc import Callable

from rules_helpers import Driver

from hub.messages import RuleState

SILENT = """
rules:
  - id: silent
    kind: no_data
    intervals: 3
    severity: warning
"""


def test_fires_after_three_expected_intervals_with_no_traffic(
    drive: Callable[..., Driver],
) -> None:
    """Interval 60 s x 3: silent at 180 s is not yet > 180 s; at 181 s it fires from tick()."""
    d = drive(SILENT)
    d.read(0, water_level_m=1.0)
    assert d.tick(180) == []
    evs = d.tick(181)
    assert [e.state for e in evs] == [RuleState.FIRING]
    assert evs[0].source == "g1"
    assert "No reading from g1" in evs[0].explanation.summary


def test_a_reading_resolves(drive: Callable[..., Driver]) -> None:
    """The next reading resolves the alert; ticks after it stay quiet."""
    d = drive(SILENT)
    d.read(0, water_level_m=1.0)
    d.tick(200)
    evs = d.read(210, water_level_m=1.0)
    assert [e.state for e in evs] == [RuleState.RESOLVED]
    assert d.tick(300) == []


def test_after_overrides_the_interval_and_metric_scopes_it(drive: Callable[..., Driver]) -> None:
    """metric: rainfall_mm_h, after: 10m: readings without rainfall do not count."""
    d = drive(
        """
rules:
  - {id: rain-silent, kind: no_data, metric: rainfall_mm_h, after: 10m, severity: info}
"""
    )
    d.read(0, rainfall_mm_h=1.0)
    d.read(300, water_level_m=1.0)
    assert d.tick(600) == []
    assert [e.state for e in d.tick(601)] == [RuleState.FIRING]


def test_receive_time_counts_for_backfilled_readings(drive: Callable[..., Driver]) -> None:
    """An old (backfilled) reading received now proves the device is alive."""
    d = drive(SILENT)
    d.read(0, water_level_m=1.0, received_ms=1_764_000_000_000 + 600_000)
    assert d.tick(700) == []


def test_fires_once_while_silent(drive: Callable[..., Driver]) -> None:
    """Repeated ticks during a long silence do not fire twice."""
    d = drive(SILENT)
    d.read(0, water_level_m=1.0)
    for s in range(200, 2000, 50):
        d.tick(s)
    assert len(d.fired("silent")) == 1


def test_unknown_interval_falls_back_to_60s(drive: Callable[..., Driver]) -> None:
    """An asset type with no catalog interval uses 60 s."""
    d = drive(SILENT, interval_s=None)
    d.read(0, water_level_m=1.0)
    assert d.tick(180) == []
    assert len(d.tick(181)) == 1
