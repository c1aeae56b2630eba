"""An alert resolved by hand re-arms its series: the next evaluation that still holds
fires again, the next that does not ends it; a resolution never silences a live condition."""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st
from rules_helpers import Driver, make_driver

from hub.messages import RuleState

Drive = Callable[..., Driver]

THRESHOLD = """
rules:
  - {id: hi, kind: threshold, metric: v, op: ">", value: 5, clear: 4, severity: critical}
"""
HELD = """
rules:
  - {id: hi, kind: threshold, metric: v, op: ">", value: 5, clear: 4, for: 2m, clear_for: 1m,
     severity: critical}
"""
QUIET = """
rules:
  - {id: quiet, kind: no_data, after: 3m, severity: warning}
"""
AREA = """
rules:
  - {id: hi, kind: threshold, metric: v, op: ">", value: 5, severity: warning}
  - {id: flood, kind: composite, severity: critical, area: {rule: hi, at_least: 2}}
"""


def test_the_next_reading_that_still_holds_fires_again(drive: Drive) -> None:
    """Resolved by hand while over the threshold: the next reading still over it fires
    the rule again (a new alert for the manager); readings after that change nothing."""
    d = drive(THRESHOLD)
    d.read(0, v=9)
    assert d.engine.rearm("hi", "d01", "g1") is True
    d.read(60, v=9)
    d.read(120, v=9)
    assert d.states("hi") == [("firing", "g1", 0), ("firing", "g1", 60)]


def test_the_next_reading_that_does_not_hold_ends_it_without_waiting(drive: Drive) -> None:
    """Re-armed, then clear: the series goes inactive at once (its alert is already
    resolved; no clear_for to wait out), and a later rise goes through `for` again."""
    d = drive(HELD)
    d.read(0, v=9)
    d.read(120, v=9)  # fires after `for: 2m`
    assert d.engine.rearm("hi", "d01", "g1") is True
    d.read(130, v=1)
    d.read(140, v=9)
    d.read(200, v=9)
    d.read(260, v=9)
    assert d.states("hi") == [
        ("pending", "g1", 0),
        ("firing", "g1", 120),
        ("resolved", "g1", 130),
        ("pending", "g1", 140),
        ("firing", "g1", 260),
    ]


def test_resolved_while_clearing_fires_again_if_the_condition_returns(drive: Drive) -> None:
    """Resolved by hand while its clear_for runs (the condition no longer held): if the
    condition comes back, that is a new alert, not the old one quietly kept open."""
    d = drive(HELD)
    d.read(0, v=9)
    d.read(120, v=9)
    d.read(130, v=1)  # clearing, for clear_for: 1m
    assert d.engine.rearm("hi", "d01", "g1") is False
    d.read(140, v=9)
    assert d.states("hi")[-1] == ("firing", "g1", 140)


def test_rearm_of_a_series_that_is_not_firing_changes_nothing(drive: Drive) -> None:
    """Unknown rule, unknown source, or a series not firing: False, and no effect."""
    d = drive(HELD)
    d.read(0, v=9)  # pending
    assert d.engine.rearm("hi", "d01", "g1") is False
    assert d.engine.rearm("nope", "d01", "g1") is False
    assert d.engine.rearm("hi", "d01", "g9") is False
    d.read(120, v=9)
    assert d.states("hi") == [("pending", "g1", 0), ("firing", "g1", 120)]


def test_no_data_resolved_while_still_silent_comes_back_at_the_next_tick(drive: Drive) -> None:
    """A silent device's alert resolved by hand fires again at the next timer tick while
    the device stays silent (each tick is an evaluation of no_data)."""
    d = drive(QUIET)
    d.read(0, v=1)
    d.tick(200)
    assert d.engine.rearm("quiet", "d01", "g1") is True
    d.tick(201)
    assert d.states("quiet") == [("firing", "g1", 200), ("firing", "g1", 201)]


def test_area_alert_resolved_by_hand_comes_back_when_its_members_are_counted_again(
    drive: Drive,
) -> None:
    """An area alert resolved by hand: its district is decided again when a member
    changes, and fires again if enough members still fire."""
    d = drive(AREA)
    d.read(0, "g1", v=9)
    d.read(0, "g2", v=9)
    assert d.engine.rearm("flood", "d01", "_area") is True
    d.read(10, "g3", v=9)
    assert d.states("flood") == [("firing", "_area", 0), ("firing", "_area", 10)]


def test_a_rearmed_series_stays_rearmed_across_a_snapshot(drive: Drive) -> None:
    """Saved and restored (a restart), a re-armed series still fires at the next
    reading that holds."""
    d = drive(THRESHOLD)
    d.read(0, v=9)
    d.engine.rearm("hi", "d01", "g1")
    restored = make_driver(THRESHOLD)
    restored.engine.restore(d.engine.snapshot())
    restored.read(60, v=9)
    assert restored.states("hi") == [("firing", "g1", 60)]
    assert restored.engine.firing() == [("hi", "d01", "g1")]


ops = st.lists(
    st.tuples(
        st.sampled_from(["read", "read", "tick", "rearm"]),
        st.integers(min_value=1, max_value=200),
        st.sampled_from(["g1", "g2"]),
        st.floats(min_value=0, max_value=12, allow_nan=False),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(ops)
def test_firing_and_resolved_alternate_except_that_a_rearm_may_fire_again(
    steps: list[tuple[str, int, str, float]],
) -> None:
    """Per series, RESOLVED only ever follows FIRING, and FIRING follows RESOLVED, or
    FIRING when the series was re-armed in between; times never go backwards."""
    d = make_driver(HELD + "  - {id: quiet, kind: no_data, after: 3m, severity: warning}\n")
    now = 0
    rearmed: set[tuple[str, str]] = set()
    last: dict[tuple[str, str], tuple[RuleState, int]] = {}
    for op, dt, dev, v in steps:
        now += dt
        seen = len(d.events)
        if op == "read":
            d.read(now, dev, v=round(v, 1))
        elif op == "tick":
            d.tick(now)
        else:
            for rid in ("hi", "quiet"):
                d.engine.rearm(rid, "d01", dev)
                rearmed.add((rid, dev))
        for e in d.events[seen:]:
            if e.state is RuleState.PENDING:
                continue
            key = (e.rule_id, e.source)
            prev = last.get(key)
            if e.state is RuleState.FIRING:
                assert prev is None or prev[0] is RuleState.RESOLVED or key in rearmed, (key, prev)
            else:
                assert prev is not None, key
                assert prev[0] is RuleState.FIRING, (key, prev)
            assert prev is None or e.ts_ms >= prev[1]
            rearmed.discard(key)
            last[key] = (e.state, e.ts_ms)
