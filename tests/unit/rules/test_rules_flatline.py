"""flatline: a value stuck within epsilon for a duration; restarts, min_samples, gaps."""

from __future__ import annotations

from collections.abc import Callable

from rules_helpers import Driver

from hub.messages import RuleState

FLAT = """
rules:
  - id: stuck
    kind: flatline
    metric: water_level_m
    duration: 10m
    epsilon: 0.01
    min_samples: 3
    severity: warning
"""


def test_fires_when_the_run_spans_exactly_the_duration(drive: Callable[..., Driver]) -> None:
    """Same value at 0, 5 and 10 minutes: fires at 10m, not at 5m."""
    d = drive(FLAT)
    d.read(0, water_level_m=1.234)
    assert d.read(300, water_level_m=1.234) == []
    evs = d.read(600, water_level_m=1.239)
    assert [e.state for e in evs] == [RuleState.FIRING]
    assert "may be stuck" in evs[0].explanation.summary


def test_movement_beyond_epsilon_resolves_and_restarts(drive: Callable[..., Driver]) -> None:
    """A step larger than epsilon resolves and starts a new run."""
    d = drive(FLAT)
    for i in range(3):
        d.read(i * 300, water_level_m=1.0)
    evs = d.read(900, water_level_m=1.5)
    assert [e.state for e in evs] == [RuleState.RESOLVED]
    assert d.read(1200, water_level_m=1.5) == []


def test_noise_within_epsilon_but_drift_beyond_it_is_not_flat(
    drive: Callable[..., Driver],
) -> None:
    """Each step is < epsilon but the band grows past it: not a flatline."""
    d = drive(FLAT)
    for i in range(20):
        d.read(i * 60, water_level_m=1.0 + 0.006 * i)
    assert d.fired("stuck") == []


def test_min_samples_guards_a_sparse_series(drive: Callable[..., Driver]) -> None:
    """Two equal readings 1 h apart are not enough evidence (min_samples 3)."""
    d = drive(FLAT)
    d.read(0, water_level_m=1.0)
    assert d.read(3600, water_level_m=1.0) == []


def test_late_reading_is_ignored(drive: Callable[..., Driver]) -> None:
    """An out-of-order reading does not break or extend the run."""
    d = drive(FLAT)
    d.read(0, water_level_m=1.0)
    d.read(300, water_level_m=1.0)
    d.read(100, water_level_m=9.0)
    assert [e.state for e in d.read(600, water_level_m=1.0)] == [RuleState.FIRING]
