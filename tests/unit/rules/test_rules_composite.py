"""composite: all/any conditions on one device (burst) and area rules over a district."""

from __future__ import annotations

from collections.abc import Callable

from rules_helpers import Driver

from hub.messages import AREA_SOURCE, RuleState, Severity

BURST = """
rules:
  - id: burst
    kind: composite
    all:
      - {metric: pressure_bar, of: change_pct, window: 3m, op: "<=", value: -30}
      - {metric: flow_l_s, of: change_pct, window: 3m, op: ">=", value: 50}
    severity: critical
"""

AREA = """
rules:
  - id: high
    kind: threshold
    metric: water_level_m
    op: ">"
    value: 3.0
    severity: critical
  - id: area
    match: {asset_type: flood_gauge}
    kind: composite
    area: {rule: high, state: firing, at_least: 3}
    severity: emergency
"""


def test_burst_needs_both_conditions(drive: Callable[..., Driver]) -> None:
    """Pressure drop alone does not fire; drop plus flow spike in one reading does."""
    d = drive(BURST)
    d.read(0, asset_type="water_main", pressure_bar=4.0, flow_l_s=40)
    assert d.read(60, asset_type="water_main", pressure_bar=2.0, flow_l_s=41) == []
    d2 = drive(BURST)
    d2.read(0, asset_type="water_main", pressure_bar=4.0, flow_l_s=40)
    evs = d2.read(60, asset_type="water_main", pressure_bar=2.0, flow_l_s=400)
    assert [e.state for e in evs] == [RuleState.FIRING]
    assert "yes" in evs[0].explanation.summary
    assert evs[0].explanation.observed["flow_l_s_change"] == 900.0


def test_stale_condition_does_not_combine(drive: Callable[..., Driver]) -> None:
    """A flow spike 10 minutes ago does not combine with a pressure drop now."""
    d = drive(BURST)
    d.read(0, asset_type="water_main", flow_l_s=40)
    d.read(60, asset_type="water_main", flow_l_s=400)
    d.read(600, asset_type="water_main", pressure_bar=4.0)
    assert d.read(660, asset_type="water_main", pressure_bar=2.0) == []


def test_any_condition_fires_and_resolves(drive: Callable[..., Driver]) -> None:
    """any: either band edge fires; back inside resolves."""
    d = drive(
        """
rules:
  - id: volt
    kind: composite
    any:
      - {metric: voltage_v, op: "<", value: 207}
      - {metric: voltage_v, op: ">", value: 253}
    severity: warning
"""
    )
    assert d.read(0, asset_type="streetlight", voltage_v=230) == []
    assert [e.state for e in d.read(300, asset_type="streetlight", voltage_v=260)] == [
        RuleState.FIRING
    ]
    assert [e.state for e in d.read(600, asset_type="streetlight", voltage_v=230)] == [
        RuleState.RESOLVED
    ]


def test_area_fires_at_exactly_k_devices(drive: Callable[..., Driver]) -> None:
    """Two firing gauges: nothing; the third fires the area rule for source _area."""
    d = drive(AREA)
    d.read(0, "g1", water_level_m=3.5)
    d.read(0, "g2", water_level_m=3.5)
    d.read(0, "g9", district="d02", water_level_m=3.5)
    assert d.fired("area") == []
    evs = d.read(60, "g3", water_level_m=3.5)
    area = [e for e in evs if e.rule_id == "area"]
    assert [(e.state, e.source, e.district, e.asset_type) for e in area] == [
        (RuleState.FIRING, AREA_SOURCE, "d01", "flood_gauge")
    ]
    assert area[0].severity is Severity.EMERGENCY
    assert "g1, g2, g3" in area[0].explanation.summary


def test_area_resolves_when_a_member_clears(drive: Callable[..., Driver]) -> None:
    """Down to two firing gauges: the area alert resolves."""
    d = drive(AREA)
    for g in ("g1", "g2", "g3"):
        d.read(0, g, water_level_m=3.5)
    evs = d.read(60, "g2", water_level_m=1.0)
    assert [(e.rule_id, e.state) for e in evs] == [
        ("high", RuleState.RESOLVED),
        ("area", RuleState.RESOLVED),
    ]


def test_area_for_completes_on_tick(drive: Callable[..., Driver]) -> None:
    """An area rule with for: 5m fires from tick() with no further readings."""
    d = drive(AREA.replace("severity: emergency", "severity: emergency\n    for: 5m"))
    for g in ("g1", "g2", "g3"):
        d.read(0, g, water_level_m=3.5)
    assert d.tick(299) == []
    assert [e.rule_id for e in d.tick(300)] == ["area"]


def test_area_match_filters_members(drive: Callable[..., Driver]) -> None:
    """Area match asset_type flood_gauge: firing manholes are not counted."""
    d = drive(AREA)
    d.read(0, "g1", water_level_m=3.5)
    d.read(0, "g2", water_level_m=3.5)
    d.read(0, "m1", asset_type="manhole", water_level_m=3.5)
    assert d.fired("area") == []


def test_late_reading_does_not_complete_or_break_a_burst(drive: Callable[..., Driver]) -> None:
    """An out-of-order reading neither fires a composite rule nor resolves a firing one."""
    d = drive(BURST)
    d.read(0, asset_type="water_main", pressure_bar=4.0, flow_l_s=40)
    d.read(120, asset_type="water_main", pressure_bar=4.0, flow_l_s=40)
    # Late (older than 120 s) and a burst on its face: no state change.
    assert d.read(60, asset_type="water_main", pressure_bar=1.0, flow_l_s=400) == []
    evs = d.read(180, asset_type="water_main", pressure_bar=2.0, flow_l_s=400)
    assert [e.state for e in evs] == [RuleState.FIRING]
    # Late and back to normal: the burst alert stays open.
    assert d.read(150, asset_type="water_main", pressure_bar=4.0, flow_l_s=40) == []
    assert d.engine.counts()["burst"] == (1, 0)
    assert d.engine.late_readings == 2
