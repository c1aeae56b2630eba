"""RuleService: managed rules through the API port, recorded changes, reloads, restarts."""

from __future__ import annotations

from pathlib import Path

import pytest
from rules_helpers import T0

from hub.clock import FakeClock
from hub.messages import Reading, RuleState
from hub.ports import Conflict, NotFound, RuleInvalid
from hub.rules.service import RuleService
from hub.settings import RulesSettings

FILE_RULES = """\
rules:
  - id: high
    kind: threshold
    metric: water_level_m
    op: ">"
    value: 3.0
    for: 2m
    severity: critical
  - id: gas
    kind: threshold
    metric: methane_pct_lel
    op: ">="
    value: 10
    severity: warning
"""

BODY = """\
id: low-pressure
description: Pressure below 1 bar
match: {asset_type: water_main}
kind: threshold
metric: pressure_bar
op: "<"
value: 1.0
severity: critical
"""


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    d = tmp_path / "rules"
    d.mkdir()
    (d / "base.yaml").write_text(FILE_RULES)
    return d


def make_service(tmp_path: Path, rules_dir: Path, clock: FakeClock) -> RuleService:
    settings = RulesSettings(paths=[str(rules_dir)], managed_dir=str(rules_dir / "managed"))
    return RuleService(settings, tmp_path / "data", clock=clock, expected_interval_s=lambda _: 60)


def reading(at_s: float, device: str = "g1", **metrics: float) -> Reading:
    return Reading("d01", "flood_gauge", device, T0 + round(at_s * 1000), metrics)


def test_lists_file_rules_and_the_builtin(tmp_path: Path, rules_dir: Path) -> None:
    """list_rules shows file rules with file, version and source text, plus sensor-fault."""
    svc = make_service(tmp_path, rules_dir, FakeClock())
    by_id = {r.id: r for r in svc.list_rules()}
    assert set(by_id) == {"high", "gas", "sensor-fault"}
    assert by_id["high"].file == str(rules_dir / "base.yaml")
    assert by_id["high"].source_yaml.startswith("id: high\nkind: threshold\n")
    assert not by_id["high"].managed
    assert svc.problems() == []


def test_create_update_delete_managed_rule_with_recorded_diffs(
    tmp_path: Path, rules_dir: Path
) -> None:
    """The API writes a managed file, reloads, and records author, time and a unified diff."""
    clock = FakeClock()
    svc = make_service(tmp_path, rules_dir, clock)
    created = svc.create_rule(BODY, actor="alice")
    assert created.managed
    assert (rules_dir / "managed" / "low-pressure.yaml").exists()
    ev = svc.evaluate(Reading("d01", "water_main", "wm1", T0, {"pressure_bar": 0.5}))
    assert [(e.rule_id, e.state) for e in ev] == [("low-pressure", RuleState.FIRING)]

    clock.advance(60)
    updated = svc.update_rule("low-pressure", BODY.replace("1.0", "0.8"), actor="bob")
    assert updated.version != created.version
    clock.advance(60)
    svc.delete_rule("low-pressure", actor="carol")
    assert svc.get_rule("low-pressure") is None

    changes = svc.changes(10)
    assert [(c["actor"], c["action"], c["rule_id"]) for c in changes] == [
        ("carol", "delete", "low-pressure"),
        ("bob", "update", "low-pressure"),
        ("alice", "create", "low-pressure"),
    ]
    assert "-    value: 1.0\n+    value: 0.8" in changes[1]["diff"]
    assert changes[0]["ts_ms"] - changes[2]["ts_ms"] == 120_000


def test_api_errors_are_the_loader_errors(tmp_path: Path, rules_dir: Path) -> None:
    """A bad body gives the same line/field problem as a file; nothing is written."""
    svc = make_service(tmp_path, rules_dir, FakeClock())
    with pytest.raises(RuleInvalid) as exc:
        svc.create_rule(BODY.replace("value: 1.0", "value: low"), actor="a")
    assert [str(p) for p in exc.value.problems] == [
        "<request>:7: value: Input should be a valid number, unable to parse string as a number"
    ]
    assert list((rules_dir / "managed").iterdir()) == []
    with pytest.raises(RuleInvalid):
        svc.create_rule(
            "id: area\nkind: composite\nseverity: info\narea: {rule: nope, at_least: 2}\n", "a"
        )
    assert svc.changes(10) == []


def test_conflicts_and_not_found(tmp_path: Path, rules_dir: Path) -> None:
    """Duplicate ids conflict; file rules cannot be changed through the API; unknown ids 404."""
    svc = make_service(tmp_path, rules_dir, FakeClock())
    with pytest.raises(Conflict):
        svc.create_rule(BODY.replace("low-pressure", "high"), actor="a")
    with pytest.raises(Conflict):
        svc.update_rule("high", BODY.replace("low-pressure", "high"), actor="a")
    with pytest.raises(Conflict):
        svc.delete_rule("gas", actor="a")
    with pytest.raises(NotFound):
        svc.delete_rule("nope", actor="a")
    svc.create_rule(BODY, actor="a")
    with pytest.raises(RuleInvalid):
        svc.update_rule("low-pressure", BODY.replace("low-pressure", "other"), actor="a")


def test_broken_file_keeps_its_previous_rules(tmp_path: Path, rules_dir: Path) -> None:
    """A broken edit is reported with file:line and the file's old rules keep running."""
    svc = make_service(tmp_path, rules_dir, FakeClock())
    (rules_dir / "base.yaml").write_text(FILE_RULES.replace("value: 10", "value: ten"))
    problems = svc.reload()
    assert [str(p) for p in problems] == [
        f"{rules_dir / 'base.yaml'}:13: rules[1].value: Input should be a valid number,"
        " unable to parse string as a number"
    ]
    assert svc.problems() == problems
    ev = svc.evaluate(Reading("d01", "manhole", "m1", T0, {"methane_pct_lel": 12.0}))
    assert [e.rule_id for e in ev] == ["gas"]
    (rules_dir / "base.yaml").write_text(FILE_RULES.replace("value: 10", "value: 15"))
    assert svc.reload() == []
    assert svc.get_rule("gas") is not None


def test_restart_keeps_pending_and_firing_state(tmp_path: Path, rules_dir: Path) -> None:
    """Pending with for: 2m and a firing rule survive save_state / new service / load_state."""
    clock = FakeClock(T0)
    svc = make_service(tmp_path, rules_dir, clock)
    assert svc.load_state() is None
    svc.evaluate(reading(0, "g1", water_level_m=3.5))  # pending, for: 2m
    fired = svc.evaluate(Reading("d01", "manhole", "m1", T0, {"methane_pct_lel": 12.0}))
    assert [e.state for e in fired] == [RuleState.FIRING]
    svc.save_state(4242)
    svc.close()

    again = make_service(tmp_path, rules_dir, clock)
    assert again.load_state() == 4242
    assert again.engine.counts()["high"] == (0, 1)
    assert again.engine.counts()["gas"] == (1, 0)
    # Still high: no re-fire of the gas alert; the pending one fires at its deadline.
    assert (
        again.evaluate(Reading("d01", "manhole", "m1", T0 + 60_000, {"methane_pct_lel": 12.0}))
        == []
    )
    evs = again.evaluate(reading(120, "g1", water_level_m=3.5))
    assert [(e.rule_id, e.state, e.ts_ms - T0) for e in evs] == [
        ("high", RuleState.FIRING, 120_000)
    ]
    evs = again.evaluate(Reading("d01", "manhole", "m1", T0 + 180_000, {"methane_pct_lel": 1.0}))
    assert [(e.rule_id, e.state) for e in evs] == [("gas", RuleState.RESOLVED)]


async def test_checkpoint_is_built_in_steps_and_restores_like_save_state(
    tmp_path: Path, rules_dir: Path
) -> None:
    """The snapshot pauses every chunk of series; snapshot then write gives a loadable file."""
    clock = FakeClock(T0)
    svc = make_service(tmp_path, rules_dir, clock)
    for i in range(10):
        svc.evaluate(reading(0, f"g{i}", water_level_m=3.5))  # ten pending series
    series = svc.engine.series_count()
    rules = len(svc.engine.counts())
    pauses = sum(1 for _ in svc.engine.snapshot_steps(chunk=2))
    assert pauses == series // 2 + rules  # a pause per chunk and after each rule's encoding
    await svc.write_snapshot(await svc.snapshot(), 77)
    svc.close()
    again = make_service(tmp_path, rules_dir, clock)
    assert again.load_state() == 77
    assert again.engine.counts()["high"] == (0, 10)


def test_changed_rule_does_not_restore_stale_state(tmp_path: Path, rules_dir: Path) -> None:
    """State of a rule whose file changed while the hub was down is not restored."""
    clock = FakeClock(T0)
    svc = make_service(tmp_path, rules_dir, clock)
    svc.evaluate(reading(0, "g1", water_level_m=3.5))
    svc.save_state(1)
    (rules_dir / "base.yaml").write_text(FILE_RULES.replace("for: 2m", "for: 5m"))
    again = make_service(tmp_path, rules_dir, clock)
    assert again.load_state() == 1
    assert again.engine.counts()["high"] == (0, 0)


def test_damaged_state_file_means_cold_start(tmp_path: Path, rules_dir: Path) -> None:
    """A corrupt state file is logged and ignored, not a crash."""
    svc = make_service(tmp_path, rules_dir, FakeClock())
    state = tmp_path / "data" / "rules" / "state.bin"
    state.parent.mkdir(parents=True)
    state.write_bytes(b'{"journal_offset": 3}\nnot zlib')
    assert svc.load_state() is None


def test_reload_events_are_delivered_with_the_next_evaluation(
    tmp_path: Path, rules_dir: Path
) -> None:
    """Removing a firing rule's file yields RESOLVED on the next tick."""
    svc = make_service(tmp_path, rules_dir, FakeClock())
    svc.evaluate(Reading("d01", "manhole", "m1", T0, {"methane_pct_lel": 12.0}))
    (rules_dir / "base.yaml").write_text(FILE_RULES.split("  - id: gas", maxsplit=1)[0])
    svc.reload()
    evs = svc.tick(T0 + 1000)
    assert [(e.rule_id, e.state) for e in evs] == [("gas", RuleState.RESOLVED)]


def test_file_edits_are_recorded_too(tmp_path: Path, rules_dir: Path) -> None:
    """An edit made to a rule file (not through the API) lands in the change log with its diff."""
    svc = make_service(tmp_path, rules_dir, FakeClock())
    (rules_dir / "base.yaml").write_text(FILE_RULES.replace("value: 10", "value: 12"))
    svc.reload()
    (change,) = svc.changes(10)
    assert (change["actor"], change["action"], change["rule_id"]) == ("file", "file-edit", "gas")
    assert "-    value: 10\n+    value: 12" in change["diff"]
    svc.create_rule(BODY, actor="alice")
    assert [c["actor"] for c in svc.changes(10)] == ["alice", "file"]


def test_json_and_commented_bodies_become_valid_files(tmp_path: Path, rules_dir: Path) -> None:
    """A JSON body and a YAML body with comments are written as loadable rule files."""
    svc = make_service(tmp_path, rules_dir, FakeClock())
    svc.create_rule(
        '{"id": "j", "kind": "no_data", "after": "10m",\n "severity": "info"}', actor="a"
    )
    svc.create_rule("# why: the pump station\n" + BODY.replace("low-pressure", "c"), actor="a")
    assert svc.problems() == []
    assert {"j", "c"} <= {r.id for r in svc.list_rules() if r.managed}


def test_evaluate_many_is_evaluate_in_order(tmp_path: Path, rules_dir: Path) -> None:
    """A batch gives the events one-by-one evaluation gives, in the same order."""
    readings = [
        reading(t, f"g{i}", water_level_m=v)
        for t, v in ((0, 3.5), (60, 3.6), (200, 1.0))
        for i in range(3)
    ]
    one = make_service(tmp_path / "one", rules_dir, FakeClock(T0))
    batch = make_service(tmp_path / "batch", rules_dir, FakeClock(T0))
    expected = [e for r in readings for e in one.evaluate(r)]
    got = batch.evaluate_many(readings)
    assert expected  # the readings do change rule states
    assert [(e.rule_id, e.source, e.state, e.ts_ms) for e in got] == [
        (e.rule_id, e.source, e.state, e.ts_ms) for e in expected
    ]


def test_thresholds_are_the_fixed_levels_of_the_rules_matching_a_device(
    tmp_path: Path, rules_dir: Path, fake_clock: FakeClock
) -> None:
    """Threshold rules and composite value conditions matching the device give chart lines;
    rules of other asset types, change conditions and area rules do not."""
    (rules_dir / "more.yaml").write_text(
        """\
rules:
  - id: mains-low
    match: {asset_type: water_main}
    kind: threshold
    metric: pressure_bar
    op: "<"
    value: 1.0
    clear: 1.2
    severity: critical
  - id: burst
    match: {asset_type: flood_gauge, district: "d0*"}
    kind: composite
    all:
      - {metric: water_level_m, op: ">=", value: 2.0}
      - {metric: water_level_m, op: ">=", value: 0.5, of: change, window: 1h}
    severity: warning
  - id: other-district
    match: {district: d09}
    kind: threshold
    metric: water_level_m
    op: ">"
    value: 9
    severity: info
"""
    )
    service = make_service(tmp_path, rules_dir, fake_clock)
    lines = {
        (t.rule_id, t.metric, t.op, t.value, t.clear, t.severity)
        for t in service.thresholds("d01", "flood_gauge", "g1")
    }
    assert lines == {
        ("high", "water_level_m", ">", 3.0, None, "critical"),
        ("gas", "methane_pct_lel", ">=", 10.0, None, "warning"),
        ("burst", "water_level_m", ">=", 2.0, None, "warning"),
    }
    mains = service.thresholds("d01", "water_main", "m1")
    assert ("mains-low", 1.0, 1.2) in [(t.rule_id, t.value, t.clear) for t in mains]
    service.close()
