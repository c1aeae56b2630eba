"""threshold: boundaries, hysteresis, for:, clear_for, late and out-of-order readings."""

from __future__ import annotations

from collections.abc import Callable

from rules_helpers import Driver

from hub.messages import RuleState, Severity

RULE = """
rules:
  - id: high
    description: level high
    match: {asset_type: flood_gauge}
    kind: threshold
    metric: water_level_m
    op: ">"
    value: 3.0
    clear: 2.8
    for: 2m
    severity: critical
    labels: {team: flood}
"""

NO_FOR = RULE.replace("for: 2m", "for: 0")


def test_value_exactly_at_threshold_does_not_fire_for_strict_op(
    drive: Callable[..., Driver],
) -> None:
    """`>` 3.0 is not met by exactly 3.0; 3.0001 fires at once when for is 0."""
    d = drive(NO_FOR)
    assert d.read(0, water_level_m=3.0) == []
    evs = d.read(60, water_level_m=3.0001)
    assert [e.state for e in evs] == [RuleState.FIRING]


def test_for_exactly_met_fires_on_the_reading_that_completes_it(
    drive: Callable[..., Driver],
) -> None:
    """Pending at t, still true at t+2m exactly: fires at t+2m, not before."""
    d = drive(RULE)
    assert [e.state for e in d.read(0, water_level_m=3.5)] == [RuleState.PENDING]
    assert d.read(60, water_level_m=3.5) == []
    assert d.read(119.999, water_level_m=3.5) == []
    evs = d.read(120, water_level_m=3.5)
    assert [e.state for e in evs] == [RuleState.FIRING]
    ev = evs[0]
    assert ev.severity is Severity.CRITICAL
    assert ev.labels == {"team": "flood"}
    assert ev.description == "level high"
    assert ev.explanation.threshold == 3.0
    assert ev.explanation.observed == {"water_level_m": 3.5}
    assert "3.5" in ev.explanation.summary
    assert "> 3" in ev.explanation.summary


def test_pending_drops_silently_when_condition_breaks(drive: Callable[..., Driver]) -> None:
    """A dip below the threshold during for: restarts the timer; no FIRING, no RESOLVED."""
    d = drive(RULE)
    d.read(0, water_level_m=3.5)
    d.read(60, water_level_m=2.9)
    d.read(90, water_level_m=3.5)
    assert d.read(180, water_level_m=3.5) == []  # only 90 s since the restart
    assert [e.state for e in d.read(210, water_level_m=3.5)] == [RuleState.FIRING]
    assert d.states("high") == [
        ("pending", "g1", 0.0),
        ("pending", "g1", 90.0),
        ("firing", "g1", 210.0),
    ]


def test_hysteresis_band_holds_firing_until_below_clear(drive: Callable[..., Driver]) -> None:
    """Between clear (2.8) and value (3.0) a firing rule stays firing; below 2.8 it resolves."""
    d = drive(NO_FOR)
    d.read(0, water_level_m=3.2)
    assert d.read(60, water_level_m=2.9) == []
    assert d.read(120, water_level_m=2.8) == []  # exactly at clear: still held
    evs = d.read(180, water_level_m=2.79)
    assert [e.state for e in evs] == [RuleState.RESOLVED]
    assert "clear level 2.8" in evs[0].explanation.summary


def test_hysteresis_band_does_not_start_a_new_alert(drive: Callable[..., Driver]) -> None:
    """After resolving, a value inside the band (2.9) does not fire again."""
    d = drive(NO_FOR)
    d.read(0, water_level_m=3.2)
    d.read(60, water_level_m=2.0)
    assert d.read(120, water_level_m=2.9) == []
    assert len(d.fired("high")) == 1


def test_clear_for_delays_resolution_and_a_relapse_cancels_it(
    drive: Callable[..., Driver],
) -> None:
    """clear_for 5m: a relapse within 5m keeps it firing; 5m clear resolves (by tick too)."""
    d = drive(NO_FOR.replace("clear: 2.8", "clear: 2.8\n    clear_for: 5m"))
    d.read(0, water_level_m=3.2)
    d.read(60, water_level_m=2.0)
    d.read(120, water_level_m=3.1)  # relapse: clear timer reset
    d.read(180, water_level_m=2.0)
    assert d.tick(479) == []
    assert [e.state for e in d.tick(480)] == [RuleState.RESOLVED]
    assert [s for s, _, _ in d.states("high")] == ["firing", "resolved"]


def test_for_completes_on_tick_without_new_readings(drive: Callable[..., Driver]) -> None:
    """A pending series fires from tick() once for: has elapsed and evidence is fresh."""
    d = drive(RULE)
    d.read(0, water_level_m=3.5)
    assert d.tick(119) == []
    evs = d.tick(120)
    assert [(e.state, e.ts_ms - d.events[0].ts_ms) for e in evs] == [(RuleState.FIRING, 120_000)]
    assert evs[0].reading_received_ms == 0


def test_stale_pending_is_dropped_by_tick_not_fired(drive: Callable[..., Driver]) -> None:
    """With for: 1h and a device gone quiet, tick() does not vouch for an hour-old reading."""
    d = drive(RULE.replace("for: 2m", "for: 1h"))
    d.read(0, water_level_m=3.5)
    assert d.tick(3600) == []
    assert d.engine.counts()["high"] == (0, 0)


def test_out_of_order_reading_does_not_change_state(drive: Callable[..., Driver]) -> None:
    """A reading older than the newest one evaluated is late: no transition, counted."""
    d = drive(NO_FOR)
    d.read(120, water_level_m=2.0)
    assert d.read(60, water_level_m=5.0) == []
    assert d.engine.late_readings == 1
    assert d.engine.counts()["high"] == (0, 0)


def test_gap_in_readings_still_completes_for(drive: Callable[..., Driver]) -> None:
    """Readings 0 s and 10 min apart (both high): fires on the second (for measured in time)."""
    d = drive(RULE)
    d.read(0, water_level_m=3.5)
    assert [e.state for e in d.read(600, water_level_m=3.5)] == [RuleState.FIRING]


def test_reading_received_ms_is_carried_on_firing(drive: Callable[..., Driver]) -> None:
    """FIRING from a reading carries that reading's hub receive time (latency accounting)."""
    d = drive(NO_FOR)
    evs = d.read(0, water_level_m=3.5, received_ms=1234)
    assert evs[0].reading_received_ms == 1234


def test_other_asset_types_and_metrics_do_not_cost_an_evaluation(
    drive: Callable[..., Driver],
) -> None:
    """The index skips readings of other asset types or without the metric."""
    d = drive(NO_FOR)
    d.read(0, asset_type="manhole", water_level_m=9)
    d.read(0, rainfall_mm_h=3)
    assert d.engine.counts()["high"] == (0, 0)
    # only the built-in sensor-fault rule looked at them
    assert d.engine.evaluations == 2


def test_match_globs_district_and_device(drive: Callable[..., Driver]) -> None:
    """match globs: only devices g-1* of district d0? are evaluated."""
    d = drive(NO_FOR.replace("{asset_type: flood_gauge}", "{district: 'd0?', device_id: 'g-1*'}"))
    d.read(0, "g-10", water_level_m=4)
    d.read(0, "g-20", water_level_m=4)
    d.read(0, "g-11", district="d10", water_level_m=4)
    assert [e.source for e in d.fired("high")] == ["g-10"]


def test_boolean_metric_compares_as_number(drive: Callable[..., Driver]) -> None:
    """A boolean metric (lamp_on) compares as 1/0 against value true."""
    d = drive(
        """
rules:
  - {id: on, kind: threshold, metric: lamp_on, op: "==", value: true, severity: info}
"""
    )
    d.read(0, asset_type="streetlight", lamp_on=False)
    assert [e.state for e in d.read(300, asset_type="streetlight", lamp_on=True)] == [
        RuleState.FIRING
    ]
