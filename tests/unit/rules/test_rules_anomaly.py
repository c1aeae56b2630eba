"""anomaly: median/MAD and EWMA scoring, warm-up, minimum samples and deviation."""

from __future__ import annotations

from collections.abc import Callable

from rules_helpers import Driver

from hub.messages import RuleState

MAD = """
rules:
  - id: odd
    kind: anomaly
    metric: strain_ue
    method: mad
    window: 2h
    max_samples: 60
    min_samples: 10
    z: 5
    min_deviation: 1
    severity: warning
"""


def _steady(d: Driver, n: int, start_s: int = 0) -> None:
    for i in range(n):
        d.read(start_s + i * 60, asset_type="bridge", strain_ue=100 + (i % 5))


def test_no_decision_before_min_samples(drive: Callable[..., Driver]) -> None:
    """With 9 samples in the window even a huge jump is not scored."""
    d = drive(MAD)
    _steady(d, 9)
    assert d.read(600, asset_type="bridge", strain_ue=5000) == []


def test_spike_fires_and_normal_value_resolves(drive: Callable[..., Driver]) -> None:
    """After warm-up a far value fires with its robust z; a normal one resolves."""
    d = drive(MAD)
    _steady(d, 20)
    evs = d.read(1200, asset_type="bridge", strain_ue=400)
    assert [e.state for e in evs] == [RuleState.FIRING]
    obs = evs[0].explanation.observed
    assert obs["median"] == 102
    assert obs["z"] > 5
    assert [e.state for e in d.read(1260, asset_type="bridge", strain_ue=101)] == [
        RuleState.RESOLVED
    ]


def test_small_absolute_deviation_is_ignored(drive: Callable[..., Driver]) -> None:
    """On a perfectly flat signal (MAD 0) a change within min_deviation is not an anomaly."""
    d = drive(MAD)
    for i in range(20):
        d.read(i * 60, asset_type="bridge", strain_ue=100)
    assert d.read(1200, asset_type="bridge", strain_ue=100.5) == []
    assert [e.state for e in d.read(1260, asset_type="bridge", strain_ue=103)] == [RuleState.FIRING]


def test_direction_high_ignores_drops(drive: Callable[..., Driver]) -> None:
    """direction: high fires on a rise only."""
    d = drive(MAD.replace("min_deviation: 1", "min_deviation: 1\n    direction: high"))
    _steady(d, 20)
    assert d.read(1200, asset_type="bridge", strain_ue=-300) == []
    assert len(d.read(1260, asset_type="bridge", strain_ue=500)) == 1


def test_warmup_holds_decisions(drive: Callable[..., Driver]) -> None:
    """warmup: 1h: no scoring in the first hour even with enough samples."""
    d = drive(MAD.replace("min_deviation: 1", "min_deviation: 1\n    warmup: 1h"))
    _steady(d, 30)
    assert d.read(1800, asset_type="bridge", strain_ue=900) == []
    _steady(d, 30, start_s=1860)
    assert len(d.read(3700, asset_type="bridge", strain_ue=900)) == 1


def test_ewma_band(drive: Callable[..., Driver]) -> None:
    """EWMA with alpha 0.2: a level shift fires once the band is learned."""
    d = drive(
        """
rules:
  - id: ew
    kind: anomaly
    metric: vehicles_per_min
    method: ewma
    alpha: 0.2
    min_samples: 10
    z: 4
    severity: info
"""
    )
    for i in range(30):
        d.read(i * 60, asset_type="traffic_counter", vehicles_per_min=20 + (i % 3))
    evs = d.read(1800, asset_type="traffic_counter", vehicles_per_min=80)
    assert [e.state for e in evs] == [RuleState.FIRING]
    assert "EWMA" in evs[0].explanation.summary


def test_mad_window_is_capped(drive: Callable[..., Driver]) -> None:
    """The window never holds more than max_samples values."""
    d = drive(MAD)
    _steady(d, 200)
    assert len(d.engine._kinds["odd"].series["d01/g1"].aux) == 60


def test_late_readings_join_the_window_but_are_not_scored(drive: Callable[..., Driver]) -> None:
    """A late far value changes no state; late samples still count toward min_samples."""
    d = drive(MAD)
    _steady(d, 5, start_s=600)  # readings at 600..840 s
    # Five late ones: older than the newest evaluated (840 s), within the 300 s tolerance.
    for i in range(5):
        assert d.read(545 + i * 10, asset_type="bridge", strain_ue=100 + i) == []
    assert d.engine.late_readings == 5
    assert d.read(595, asset_type="bridge", strain_ue=9000) == [], "late: never scored"
    # 11 samples (5 live + 6 late) pass min_samples 10: the next value is scored.
    evs = d.read(900, asset_type="bridge", strain_ue=400)
    assert [e.state for e in evs] == [RuleState.FIRING]


def test_for_exactly_met_on_an_anomaly(drive: Callable[..., Driver]) -> None:
    """for: 2m: anomalous at t and at t+2m exactly fires at t+2m, not at t+119.999 s."""
    d = drive(MAD.replace("severity: warning", "for: 2m\n    severity: warning"))
    _steady(d, 20)
    assert [e.state for e in d.read(1200, asset_type="bridge", strain_ue=400)] == [
        RuleState.PENDING
    ]
    assert d.read(1319.999, asset_type="bridge", strain_ue=400) == []
    assert [e.state for e in d.read(1320, asset_type="bridge", strain_ue=400)] == [RuleState.FIRING]


def test_gap_longer_than_the_window_restarts_the_warm_up(drive: Callable[..., Driver]) -> None:
    """After 3 h of silence (window 2h) the old samples are gone: no decision from stale stats."""
    d = drive(MAD)
    _steady(d, 20)
    assert d.read(20 * 60 + 3 * 3600, asset_type="bridge", strain_ue=400) == []
