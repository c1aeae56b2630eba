"""Response indicators from a real alert manager whose alert handling is known: time to
acknowledge and resolve, acknowledged within target, escalations, muted time, false
alarms, water-main incidents, by district, severity and rule."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.catalog import load_catalog
from hub.clock import FakeClock
from hub.indicators.definitions import load_definitions
from hub.indicators.fleet import interval_ms_of
from hub.indicators.periods import CityCalendar
from hub.indicators.service import IndicatorService
from hub.indicators.sqlite_store import SqliteIndicatorStore
from hub.messages import RuleState, Severity
from hub.ports import UNRESTRICTED, AlertFilter, IndicatorQuery, Scope
from tests.unit.alerts.conftest import Harness, rule_event

REPO = Path(__file__).resolve().parents[3]
CATALOG = load_catalog()
DEFS = load_definitions([REPO / "rules" / "indicators"], CATALOG).definitions
T0 = 1_767_261_600_000  # 2026-01-01T10:00Z
MIN = 60_000

ROUTES = """
receivers:
  - {name: ops, mqtt: {}}
  - {name: boss, mqtt: {}}
targets:
  acknowledge: {critical: 15m, warning: 1h}
route:
  group_wait: 0s
  repeat_interval: 1h
  routes:
    - match: {asset_type: water_main}
      receivers: [ops]
      escalate:
        - {after: 10m, receivers: [boss]}
    - receivers: [ops]
"""


@pytest.fixture
def scene(tmp_path: Path) -> Iterator[tuple[Harness, IndicatorService]]:
    """Five alerts handled at known times (see each step), and the indicators over them.

    A1 critical water_main pressure-low d01: opened 0', acked 5' by alice, fixed 60'.
    A2 critical water_main main-burst d01: opened 10', escalated 20', cleared by the rule 50'.
    A3 warning flood_gauge flood-warning d01: opened 20', cleared by the rule 25'.
    A4 warning flood_gauge flood-warning d02: opened 30', silenced 32'-35', resolved
       by bob as a false alarm 40' (nobody acknowledged it first).
    A5 info bridge vibration d01: opened 40', acked 160' (no target for info).
    """
    clock = FakeClock(T0)
    h = Harness(tmp_path / "hub.db", clock, ROUTES)
    m = h.manager

    async def play() -> None:
        await m.handle(
            [
                rule_event(
                    rule_id="pressure-low",
                    source="wm-1",
                    district="d01",
                    asset_type="water_main",
                    severity=Severity.CRITICAL,
                )
            ]
        )
        a1 = m.list_alerts(_all(), UNRESTRICTED)[0].id
        await h.advance(5 * 60)
        await m.acknowledge(a1, "alice", "")
        await h.advance(5 * 60)  # 10'
        await m.handle(
            [
                rule_event(
                    rule_id="main-burst",
                    source="wm-2",
                    district="d01",
                    asset_type="water_main",
                    severity=Severity.CRITICAL,
                )
            ]
        )
        await h.advance(10 * 60)  # 20': A2 escalates
        await m.handle(
            [
                rule_event(
                    rule_id="flood-warning",
                    source="fg-1",
                    district="d01",
                    asset_type="flood_gauge",
                    severity=Severity.WARNING,
                )
            ]
        )
        await h.advance(5 * 60)  # 25'
        await m.handle(
            [
                rule_event(
                    RuleState.RESOLVED,
                    rule_id="flood-warning",
                    source="fg-1",
                    district="d01",
                    asset_type="flood_gauge",
                    severity=Severity.WARNING,
                )
            ]
        )
        await h.advance(5 * 60)  # 30'
        await m.handle(
            [
                rule_event(
                    rule_id="flood-warning",
                    source="fg-9",
                    district="d02",
                    asset_type="flood_gauge",
                    severity=Severity.WARNING,
                )
            ]
        )
        a4 = next(a.id for a in m.list_alerts(_all(), UNRESTRICTED) if a.source == "fg-9")
        await h.advance(2 * 60)  # 32'
        m.create_silence(
            {"district": "d02"}, clock.now_ms(), clock.now_ms() + 3 * MIN, "bob", "works"
        )
        await h.advance(8 * 60)  # 40'
        await m.resolve(a4, "bob", "sensor splashed", "false_alarm")
        await m.handle(
            [
                rule_event(
                    rule_id="vibration",
                    source="br-1",
                    district="d01",
                    asset_type="bridge",
                    severity=Severity.INFO,
                )
            ]
        )
        await h.advance(10 * 60)  # 50'
        await m.handle(
            [
                rule_event(
                    RuleState.RESOLVED,
                    rule_id="main-burst",
                    source="wm-2",
                    district="d01",
                    asset_type="water_main",
                    severity=Severity.CRITICAL,
                )
            ]
        )
        await h.advance(10 * 60)  # 60'
        await m.resolve(a1, "alice", "valve replaced", "fixed")
        await h.advance(100 * 60)  # 160'
        a5 = next(a.id for a in m.list_alerts(_all(), UNRESTRICTED) if a.source == "br-1")
        await m.acknowledge(a5, "carol", "")
        await h.advance(20 * 60)  # 180'

    asyncio.run(play())
    service = IndicatorService(
        SqliteIndicatorStore(tmp_path / "hub.db"),
        CityCalendar("UTC"),
        DEFS.values(),
        intervals=interval_ms_of(CATALOG.expected_interval_s),
        clock=clock,
        responses=m,
        devices=list,
    )
    yield h, service
    h.close()


def _all() -> AlertFilter:
    return AlertFilter()


def value(
    service: IndicatorService, indicator: str, district: str | None = None, **kw: object
) -> tuple[float | None, float | None, float | None]:
    q = IndicatorQuery(
        indicator, "day", T0, T0 + 3_600_000, by="district" if district else "city", **kw
    )  # type: ignore[arg-type]
    pts = [p for p in service.series(q, UNRESTRICTED) if p.district == district]
    assert len(pts) == 1, pts
    return pts[0].value, pts[0].numerator, pts[0].denominator


def test_alert_counts_by_district_severity_and_rule(
    scene: tuple[Harness, IndicatorService],
) -> None:
    """Alerts opened: 4 in d01, 1 in d02; 2 critical; 2 water-main pressure incidents."""
    _, s = scene
    assert value(s, "alerts_opened", "d01")[0] == 4
    assert value(s, "alerts_opened", "d02")[0] == 1
    assert value(s, "alerts_opened", None, severity="critical")[0] == 2
    assert value(s, "water_main_pressure_incidents", "d01")[0] == 2


def test_times_to_acknowledge_and_resolve(scene: tuple[Harness, IndicatorService]) -> None:
    """d01: acted on after 5' (A1) and 120' (A5); resolved after 60', 40' and 5'."""
    _, s = scene
    assert value(s, "time_to_acknowledge_median_s", "d01")[0] == (300 + 7200) / 2
    assert value(s, "time_to_acknowledge_p90_s", "d01")[0] == 7200
    assert value(s, "time_to_resolve_median_s", "d01")[0] == 2400
    assert value(s, "time_to_resolve_p90_s", "d01")[0] == 3600
    # d02: bob's resolution without an acknowledgement is the first human action
    assert value(s, "time_to_acknowledge_median_s", "d02")[0] == 600
    assert value(s, "time_to_acknowledge_median_s", None, severity="critical")[0] == 300


def test_ack_within_target(scene: tuple[Harness, IndicatorService]) -> None:
    """d01: A1 in time, A2 missed, A3 needed nobody, A5 has no target: 1 of 2; d02: 1 of 1."""
    _, s = scene
    assert value(s, "ack_within_target_pct", "d01") == (50.0, 1, 2)
    assert value(s, "ack_within_target_pct", "d02") == (100.0, 1, 1)


def test_escalations_muted_time_and_false_alarms(scene: tuple[Harness, IndicatorService]) -> None:
    """A2 escalated (1 of 4 in d01); A4 muted 3'; A4 a false alarm (1 of 1 resolved in d02,
    0 of 3 in d01); per rule with rule_id."""
    _, s = scene
    assert value(s, "alerts_escalated_pct", "d01") == (25.0, 1, 4)
    muted, _, _ = value(s, "alert_muted_hours", "d02")
    assert muted == pytest.approx(3 / 60)
    assert value(s, "false_alarm_pct", "d02") == (100.0, 1, 1)
    assert value(s, "false_alarm_pct", "d01") == (0.0, 0, 3)
    assert value(s, "false_alarm_pct", None, rule_id="flood-warning") == (50.0, 1, 2)


def test_a_scoped_key_counts_its_districts_alerts_only(
    scene: tuple[Harness, IndicatorService],
) -> None:
    """A d02 scope sees d02's one alert, even grouped for the city."""
    _, s = scene
    q = IndicatorQuery("alerts_opened", "day", T0, T0 + 3_600_000, by="city")
    [p] = s.series(q, Scope(districts=frozenset({"d02"})))
    assert p.value == 1


def test_resolution_reason_is_kept_on_the_alert(scene: tuple[Harness, IndicatorService]) -> None:
    """The reason given on resolve is on the alert and in its timeline."""
    h, _ = scene
    a4 = next(a for a in h.manager.list_alerts(_all(), UNRESTRICTED) if a.source == "fg-9")
    assert a4.resolution == "false_alarm"
    assert h.manager.timeline(a4.id)[-1].detail["reason"] == "false_alarm"
    auto = next(a for a in h.manager.list_alerts(_all(), UNRESTRICTED) if a.source == "fg-1")
    assert auto.resolution is None
