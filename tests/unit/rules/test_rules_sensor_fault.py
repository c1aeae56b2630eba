"""Built-in sensor-fault rule: implausible values are a fault, not an alarm."""

from __future__ import annotations

from collections.abc import Callable

from rules_helpers import Driver

from hub.messages import RuleState, Severity

HIGH = """
rules:
  - {id: vib, kind: threshold, metric: vibration_mm_s, op: ">", value: 50, severity: critical}
"""


def test_out_of_range_value_raises_sensor_fault_not_the_alarm(
    drive: Callable[..., Driver],
) -> None:
    """250 mm/s flagged out of range: sensor-fault (warning) fires, the vibration rule not."""
    d = drive(HIGH)
    evs = d.read(0, asset_type="bridge", vibration_mm_s=250, out_of_range=("vibration_mm_s",))
    assert [(e.rule_id, e.state, e.severity) for e in evs] == [
        ("sensor-fault", RuleState.FIRING, Severity.WARNING)
    ]
    assert "vibration_mm_s=250" in evs[0].explanation.summary


def test_other_metrics_of_a_faulty_reading_are_evaluated(drive: Callable[..., Driver]) -> None:
    """Only the out-of-range metric is withheld; the rest of the reading still counts."""
    d = drive(HIGH)
    evs = d.read(
        0,
        asset_type="bridge",
        vibration_mm_s=60,
        strain_ue=99999,
        out_of_range=("strain_ue",),
    )
    assert sorted(e.rule_id for e in evs) == ["sensor-fault", "vib"]


def test_plausible_reading_resolves(drive: Callable[..., Driver]) -> None:
    """The next plausible reading resolves the sensor fault."""
    d = drive(HIGH)
    d.read(0, asset_type="bridge", vibration_mm_s=250, out_of_range=("vibration_mm_s",))
    evs = d.read(60, asset_type="bridge", vibration_mm_s=3)
    assert [(e.rule_id, e.state) for e in evs] == [("sensor-fault", RuleState.RESOLVED)]


def test_can_be_overridden_and_disabled(drive: Callable[..., Driver]) -> None:
    """A rule file can redefine sensor-fault (severity) or disable it."""
    d = drive(HIGH + "  - {id: sensor-fault, kind: sensor_fault, severity: critical, for: 2m}\n")
    d.read(0, asset_type="bridge", vibration_mm_s=250, out_of_range=("vibration_mm_s",))
    evs = d.read(120, asset_type="bridge", vibration_mm_s=250, out_of_range=("vibration_mm_s",))
    assert [(e.rule_id, e.severity) for e in evs] == [("sensor-fault", Severity.CRITICAL)]
    off = drive(
        HIGH + "  - {id: sensor-fault, kind: sensor_fault, severity: info, enabled: false}\n"
    )
    assert (
        off.read(0, asset_type="bridge", vibration_mm_s=250, out_of_range=("vibration_mm_s",)) == []
    )
