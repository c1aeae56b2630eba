"""Engine invariants (Hypothesis), hot-reload semantics of set_rules, snapshots."""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st
from rules_helpers import T0, Driver, make_driver, rules_from

from hub.messages import Reading, RuleState
from hub.rules.engine import run_steps

MIXED = """
rules:
  - {id: thr, kind: threshold, metric: v, op: ">", value: 5, clear: 4, for: 2m, clear_for: 1m,
     severity: warning}
  - {id: roc, kind: rate_of_change, metric: v, window: 5m, op: ">=", value: 3, severity: info}
  - {id: flat, kind: flatline, metric: v, duration: 5m, epsilon: 0.5, severity: info}
  - {id: quiet, kind: no_data, after: 3m, severity: info}
  - {id: odd, kind: anomaly, metric: v, min_samples: 5, max_samples: 20, z: 3, min_deviation: 1,
     severity: info}
  - id: both
    kind: composite
    severity: info
    for: 1m
    all:
      - {metric: v, op: ">", value: 6}
      - {metric: v, of: change, window: 5m, op: ">", value: 1}
  - {id: area, kind: composite, severity: critical, area: {rule: thr, at_least: 2}}
"""

steps = st.lists(
    st.tuples(
        st.sampled_from(["read", "tick"]),
        st.integers(min_value=-120, max_value=400),  # seconds forward (negative: late)
        st.sampled_from(["g1", "g2", "g3"]),
        st.floats(min_value=0, max_value=12, allow_nan=False),
    ),
    max_size=80,
)


Ops = list[tuple[str, int, str, float]]


def _play(d: Driver, ops: Ops, now: int = 0, after: Callable[[int], None] | None = None) -> int:
    """Apply ``ops`` from time ``now`` (calling ``after(now)`` after each); the end time."""
    for op, dt, dev, v in ops:
        if op == "tick":
            now += abs(dt)
            d.tick(now)
        else:
            at = now + dt
            now = max(now, at)
            d.read(max(0, at), dev, asset_type="x", v=round(v, 1))
        if after is not None:
            after(now)
    return now


def _run(drive: Callable[..., Driver], ops: Ops) -> Driver:
    d = drive(MIXED)
    _play(d, ops)
    return d


@settings(max_examples=150, deadline=None)
@given(steps)
def test_resolve_never_precedes_fire_and_no_double_fire(
    ops: list[tuple[str, int, str, float]],
) -> None:
    """Per series: FIRING and RESOLVED alternate, starting with FIRING, in time order."""
    d = _run(make_driver, ops)
    last: dict[tuple[str, str, str], tuple[RuleState, int]] = {}
    for e in d.events:
        if e.state is RuleState.PENDING:
            continue
        key = (e.rule_id, e.district, e.source)
        prev = last.get(key)
        if e.state is RuleState.FIRING:
            assert prev is None or prev[0] is RuleState.RESOLVED, (key, prev)
        else:
            assert prev is not None, f"{key} resolved before it fired"
            assert prev[0] is RuleState.FIRING, (key, prev)
            assert e.ts_ms >= prev[1]
        last[key] = (e.state, e.ts_ms)
    counts = d.engine.counts()
    for rid, (firing, _pending) in counts.items():
        open_ = sum(1 for k, (s, _) in last.items() if k[0] == rid and s is RuleState.FIRING)
        assert firing == open_


@settings(max_examples=60, deadline=None)
@given(steps, st.integers(min_value=0, max_value=80))
def test_snapshot_restore_is_transparent(ops: Ops, cut: int) -> None:
    """Snapshot at any point, restore into a new engine: the same events follow."""
    a = _run(make_driver, ops)
    b = make_driver(MIXED)
    now = _play(b, ops[:cut])
    c = make_driver(MIXED)
    c.engine.restore(b.engine.snapshot())
    c.events = list(b.events)
    _play(c, ops[cut:], now)
    strip = [(e.rule_id, e.source, e.state, e.ts_ms, e.explanation.summary) for e in a.events]
    assert strip == [
        (e.rule_id, e.source, e.state, e.ts_ms, e.explanation.summary) for e in c.events
    ]


@settings(max_examples=60, deadline=None)
@given(steps, st.integers(min_value=0, max_value=80))
def test_snapshot_is_the_state_when_taken_while_evaluation_goes_on(
    ops: list[tuple[str, int, str, float]], cut: int
) -> None:
    """Readings and ticks between a snapshot's steps do not leak into it: it is byte
    for byte the snapshot of an engine that stopped where it was taken."""
    stopped = _run(make_driver, ops[:cut])
    want = run_steps(stopped.engine.snapshot_steps(chunk=1))
    d = make_driver(MIXED)
    now = _play(d, ops[:cut])
    building = d.engine.snapshot_steps(chunk=1)
    built: list[bytes] = []

    def step(now: int) -> None:
        d.read(now, "g9", asset_type="x", v=7.0)  # a series born after the snapshot
        if not built:  # then a step of the snapshot, then more evaluation
            try:
                next(building)
            except StopIteration as done:
                built.append(done.value)

    _play(d, ops[cut:], now, after=step)
    if not built:
        built.append(run_steps(building))
    assert built[0] == want
    assert run_steps(d.engine.snapshot_steps()) != want or not ops[cut:]


RULE_A = """
rules:
  - {id: hi, kind: threshold, metric: v, op: ">", value: 5, for: 2m, severity: warning}
  - {id: lo, kind: threshold, metric: v, op: "<", value: 1, severity: warning}
"""


def test_unchanged_rule_keeps_state_across_set_rules(drive: Callable[..., Driver]) -> None:
    """Reloading the same rules keeps a pending timer: it fires at the original deadline."""
    d = drive(RULE_A)
    d.read(0, v=9)
    assert d.engine.set_rules(rules_from(RULE_A)) == []
    assert [e.state for e in d.read(120, v=9)] == [RuleState.FIRING]


def test_changed_rule_restarts_and_resolves_its_firing_series(
    drive: Callable[..., Driver],
) -> None:
    """A changed rule's firing series gets RESOLVED and the rule starts clean."""
    d = drive(RULE_A.replace("for: 2m", "for: 0"))
    d.read(0, v=9)
    d.read(0, "g2", v=0)
    evs = d.engine.set_rules(rules_from(RULE_A.replace("for: 2m", "for: 0").replace("5", "6")))
    assert [(e.rule_id, e.source, e.state) for e in evs] == [("hi", "g1", RuleState.RESOLVED)]
    assert "changed" in evs[0].explanation.summary
    assert d.engine.counts()["lo"] == (1, 0)  # untouched rule kept its state
    assert [e.state for e in d.read(60, v=9)] == [RuleState.FIRING]


def test_removed_or_disabled_rule_resolves(drive: Callable[..., Driver]) -> None:
    """Removing a firing rule (or disabling it) emits RESOLVED for its series."""
    d = drive(RULE_A.replace("for: 2m", "for: 0"))
    d.read(0, v=0)
    evs = d.engine.set_rules(
        rules_from(RULE_A.replace("for: 2m", "for: 0").split("  - {id: lo")[0])
    )
    assert [(e.rule_id, e.state) for e in evs] == [("lo", RuleState.RESOLVED)]
    assert "removed" in evs[0].explanation.summary
    assert "lo" not in d.engine.counts()


def test_evaluation_is_deterministic(drive: Callable[..., Driver]) -> None:
    """The same readings give the same events, field for field."""
    runs = []
    for _ in range(2):
        d = drive(MIXED)
        for i in range(50):
            d.read(i * 30, f"g{i % 3}", asset_type="x", v=float((i * 7) % 11))
            d.tick(i * 30 + 10)
        runs.append(d.events)
    assert runs[0] == runs[1]
    assert runs[0]


def test_event_time_is_reading_time(drive: Callable[..., Driver]) -> None:
    """FIRING from a reading is stamped with the reading's ts, not a wall clock."""
    d = drive(RULE_A)
    d.read(0, v=9)
    (ev,) = d.read(150, v=9)
    assert ev.ts_ms == T0 + 150_000


def test_prime_rebuilds_windows_without_events(drive: Callable[..., Driver]) -> None:
    """Cold start: history primes a rate window silently; the first live reading decides."""
    text = """
rules:
  - {id: roc, kind: rate_of_change, metric: v, window: 10m, op: ">=", value: 3, severity: info}
  - {id: hi, kind: threshold, metric: v, op: ">", value: 100, severity: info}
"""
    d = drive(text)
    assert d.engine.history_window_ms() == 600_000
    for i in range(5):
        d.engine.prime(Reading("d01", "x", "g1", T0 + i * 60_000, {"v": 1.0 + i}))
    assert d.engine.counts() == {"roc": (0, 0), "hi": (0, 0), "sensor-fault": (0, 0)}
    # Replayed reading also in the store (same ts as the last primed one): still evaluated.
    evs = d.read(240, asset_type="x", v=5.0)
    assert [(e.rule_id, e.state) for e in evs] == [("roc", RuleState.FIRING)]
