"""citizen_reports: enough reports of a service close together raise an area alert."""

from __future__ import annotations

from collections.abc import Callable

from rules_helpers import MIN, T0, Driver, rules_from

from hub.messages import CitizenReport, RuleEvent, RuleState
from hub.rules.engine import RuleEngine
from hub.rules.loader import load_text

GAS = """
rules:
  - id: citizens-gas
    kind: citizen_reports
    service: gas_smell
    min_reports: 3
    radius_m: 200
    window: 30m
    severity: critical
"""
#: A place and points about 55 m, 110 m and 330 m north of it.
LAT, LON = 48.8566, 2.3522
STEP = 0.0005


def _report(
    d: Driver, n: int, at_min: float, north: float = 0.0, service: str = "gas_smell"
) -> list[RuleEvent]:
    report = CitizenReport(
        report_id=str(n),
        service_code=service,
        district="d05",
        asset_type="manhole",
        ts_ms=T0 + round(at_min * MIN),
        lat=LAT + north,
        lon=LON,
    )
    events = d.engine.observe_report(report)
    d.events.extend(events)
    return events


def test_three_reports_within_200_m_and_30_min_fire_with_the_reports_explained(
    drive: Callable[..., Driver],
) -> None:
    """The third close report fires an area alert of the district naming the three."""
    d = drive(GAS)
    assert _report(d, 11, 0) == []
    assert _report(d, 12, 5, STEP) == []
    [event] = _report(d, 13, 20, 2 * STEP)
    assert (event.state, event.district, event.source, event.asset_type) == (
        RuleState.FIRING,
        "d05",
        "_area",
        "manhole",
    )
    assert event.explanation.reports == ("11", "12", "13")
    assert "3 citizen reports of gas_smell" in event.explanation.summary
    assert "requests 11, 12, 13" in event.explanation.summary
    assert event.explanation.observed == {"reports": 3.0}


def test_reports_too_far_apart_too_slow_or_of_another_service_do_not_fire(
    drive: Callable[..., Driver],
) -> None:
    """330 m apart, 40 minutes apart, or another service: no alert."""
    d = drive(GAS)
    _report(d, 1, 0)
    _report(d, 2, 1, 6 * STEP)  # 330 m north
    _report(d, 3, 2, service="flooded_street")
    _report(d, 4, 45)  # report 1 has left the window
    _report(d, 5, 46, 12 * STEP)
    assert d.events == []
    assert _report(d, 4, 47) == []  # the same report again counts once


def test_the_alert_resolves_when_the_reports_age_out(drive: Callable[..., Driver]) -> None:
    """Once fewer than three remain in the window, a tick resolves it."""
    d = drive(GAS)
    for n in range(3):
        _report(d, n, n)
    assert d.tick(29 * 60) == []
    [event] = d.tick(31 * 60)
    assert event.state is RuleState.RESOLVED
    assert "Fewer than 3 citizen reports" in event.explanation.summary


def test_state_survives_a_snapshot_and_stored_reports_prime_the_window() -> None:
    """The window is saved with the rule state; a fresh engine primed from stored reports
    fires at the third report as one that saw the first two."""
    rules = rules_from(GAS)
    engine = RuleEngine(rules, late_tolerance_s=300, expected_interval_s=lambda _a: 60.0)
    d = Driver(engine)
    _report(d, 1, 0)
    _report(d, 2, 1)
    restored = RuleEngine(rules, late_tolerance_s=300, expected_interval_s=lambda _a: 60.0)
    restored.restore(engine.snapshot())
    assert [e.state for e in _report(Driver(restored), 3, 2)] == [RuleState.FIRING]
    primed = RuleEngine(rules, late_tolerance_s=300, expected_interval_s=lambda _a: 60.0)
    for n in (1, 2):
        primed.prime_report(
            CitizenReport(str(n), "gas_smell", "d05", "manhole", T0 + n * MIN, LAT, LON)
        )
    assert [e.state for e in _report(Driver(primed), 3, 2)] == [RuleState.FIRING]


def test_match_other_than_district_is_an_error_at_its_line() -> None:
    """citizen_reports rules count reports, not devices: match.asset_type is refused."""
    text = GAS.replace(
        "    service: gas_smell\n", "    service: gas_smell\n    match: {asset_type: manhole}\n"
    )
    problems = [str(p) for p in load_text(text, "gas.yaml").problems]
    assert len(problems) == 1
    assert problems[0].startswith("gas.yaml:")
    assert "may name a district only" in problems[0]
