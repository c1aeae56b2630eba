"""The roll-up model: order-independent, idempotent, and the figures the docs define."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from hub.indicators.definitions import Condition, HoursOk
from hub.indicators.rollup import (
    UP_GRACE_SLOTS,
    HourState,
    add_seq,
    derive,
    interval_mask,
    offline_intervals,
    subtract,
)
from hub.indicators.updater import DomainPlan, add_reading
from hub.messages import Reading

HOUR = 1_767_225_600_000  # 2026-01-01T00:00Z, a day start in UTC
IV = 60_000
PLAN = DomainPlan(
    metrics={"air_quality": frozenset({"pm2_5_ug_m3"})},
    checks={
        "air_quality": [
            (
                "ok_pct",
                HoursOk(
                    kind="hours_ok",
                    asset_type="air_quality",
                    ok=Condition(metric="pm2_5_ug_m3", op="<", value=50),
                ),
            )
        ]
    },
    thresholds={"air_quality": {"above": ("pm2_5_ug_m3", 30.0)}},
)


def fresh() -> HourState:
    return HourState("aq-1", "d01", "air_quality", HOUR, HOUR, IV, 0, 60)


def reading(slot: int, offset: int, seq: int | None) -> Reading:
    # one value per slot: readings of a slot agree, as a redelivery does
    return Reading(
        "d01",
        "air_quality",
        "aq-1",
        HOUR + slot * IV + offset,
        {"pm2_5_ug_m3": slot * 1.5},
        seq=seq,
    )


def accumulate(readings: list[Reading]) -> HourState:
    state = fresh()
    for r in readings:
        add_reading(state, r, (r.ts_ms - HOUR) // IV, PLAN)
    return state


READINGS = st.lists(
    st.builds(
        reading,
        st.integers(0, 59),
        st.integers(0, IV - 1),
        st.one_of(st.none(), st.integers(0, 3000)),
    ),
    max_size=120,
)


@settings(deadline=None)
@given(READINGS, st.randoms())
def test_any_order_and_any_repeat_give_the_same_figures(
    readings: list[Reading], rnd: object
) -> None:
    """Readings in another order, or each twice (a replay), derive the same figures."""
    shuffled = list(readings)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    a = accumulate(readings)
    b = accumulate(shuffled + readings)
    assert a.bits == b.bits
    assert a.runs == b.runs
    thresholds = PLAN.thresholds["air_quality"]
    assert derive(a, thresholds=thresholds).received == derive(b, thresholds=thresholds).received
    fa, fb = derive(a, thresholds=thresholds), derive(b, thresholds=thresholds)
    assert (fa.received, fa.up, fa.seq_n, fa.seq_lost, fa.domain) == (
        fb.received,
        fb.up,
        fb.seq_n,
        fb.seq_lost,
        fb.domain,
    )


@given(st.lists(st.integers(0, 5000), max_size=200))
def test_seq_runs_hold_exactly_the_set_of_numbers(seqs: list[int]) -> None:
    """Runs are sorted, disjoint, not touching, and cover exactly the numbers added."""
    runs: list[list[int]] = []
    for s in seqs:
        add_seq(runs, s)
    covered = {n for a, b in runs for n in range(a, b + 1)}
    assert covered == set(seqs)
    assert all(runs[i][1] + 1 < runs[i + 1][0] for i in range(len(runs) - 1))


@given(st.sets(st.integers(0, 59), max_size=60), st.integers(0, UP_GRACE_SLOTS - 1))
def test_up_slots_are_the_slots_within_the_grace_of_a_reading(slots: set[int], carry: int) -> None:
    """A slot is up when it or one of the two before it (maybe in the hour before) has a reading."""
    state = fresh()
    for s in slots:
        state.bits |= 1 << s
    f = derive(state, carry_in=carry)
    expected = sum(
        1
        for s in range(60)
        if any(0 <= s - k < 60 and (s - k) in slots for k in range(UP_GRACE_SLOTS)) or s < carry
    )
    assert f.received == len(slots)
    assert f.up == expected


def test_seq_loss_counts_gaps_and_skips_restarts() -> None:
    """Missing numbers between runs and since the hour before are lost; a big jump is a restart."""
    state = fresh()
    for s in [*range(10, 20), *range(25, 30), 9000]:
        add_seq(state.runs, s)
    f = derive(state, prev_seq_last=5)
    assert f.seq_n == 16
    assert f.seq_lost == 4 + 5  # 6..9 before, 20..24 between; 30..8999 is a restart
    assert f.seq_last == 9000


def test_maintenance_and_offline_slots_are_not_counted() -> None:
    """Slots in maintenance count neither as received nor up; offline slots are not up."""
    state = fresh()
    state.bits = (1 << 60) - 1
    maint = interval_mask([(HOUR, HOUR + 10 * IV)], HOUR, IV, 0, 60)
    off = interval_mask(
        offline_intervals([(HOUR + 30 * IV, "offline"), (HOUR + 35 * IV, "online")]),
        HOUR,
        IV,
        0,
        60,
    )
    f = derive(state, maintenance=maint, offline=off)
    assert f.received == 50
    assert f.up == 45


def test_domain_figures_of_an_hour() -> None:
    """Count, sum, hours above a threshold and hours_ok checks, first reading per slot."""
    readings = [reading(s, 0, None) for s in (10, 20, 30)] + [reading(30, 5, None)]
    state = accumulate(readings)
    f = derive(state, thresholds=PLAN.thresholds["air_quality"])
    assert f.domain["n"] == {"pm2_5_ug_m3": 3}
    assert f.domain["s"] == {"pm2_5_ug_m3": 15 + 30 + 45}
    assert f.domain["h"] == {"above": 1}  # 45 > 30
    assert f.domain["c"] == {"ok_pct": [1, 1]}  # every value under 50
    assert state.extra == 1


def test_horizon_leaves_slots_not_begun_out() -> None:
    """An hour in progress counts only the slots that have begun."""
    state = fresh()
    state.bits = 0b111
    f = derive(state, horizon=2)
    assert (f.received, f.up) == (2, 2)


@given(
    st.tuples(st.integers(0, 100), st.integers(0, 100)),
    st.lists(st.tuples(st.integers(0, 100), st.integers(0, 100)), max_size=5),
)
def test_subtract_leaves_exactly_the_points_outside_the_holes(
    span: tuple[int, int], holes: list[tuple[int, int]]
) -> None:
    """What subtract keeps is the span's points in no hole."""
    kept = subtract(span, holes)
    points = {t for a, b in kept for t in range(a, b)}
    assert points == {t for t in range(*span) if not any(a <= t < b for a, b in holes)}
