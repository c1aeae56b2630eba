"""Rule files: file:line errors with key paths, cross-file checks, `hub rules check`."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.ports import RuleInvalid
from hub.rules.loader import check_command, load_rules, load_text, parse_rule_text
from hub.rules.model import ThresholdRule

GOOD = """\
rules:
  - id: flood-critical
    description: River gauge above the flood warning level
    match: {asset_type: flood_gauge}
    kind: threshold
    metric: water_level_m
    op: ">"
    value: 3.0
    clear: 2.8
    for: 2m
    severity: critical
    labels: {team: flood-response}
"""

REPO_RULES = Path(__file__).resolve().parents[3] / "rules"


def messages(text: str) -> list[str]:
    return [str(p) for p in load_text(text, "f.yaml").problems]


def test_contract_example_loads() -> None:
    """The CONTRACT §7 example is valid and keeps its fields."""
    res = load_text(GOOD, "f.yaml")
    assert res.problems == []
    (rule,) = res.rules
    assert isinstance(rule, ThresholdRule)
    assert (rule.for_ms, rule.clear, rule.severity) == (120_000, 2.8, "critical")
    assert res.sources["flood-critical"].line == 2
    assert res.sources["flood-critical"].source_yaml.startswith("id: flood-critical\n")


def test_wrong_value_names_line_and_key_path() -> None:
    """A bad value in the third rule is reported at its line as rules[2].value."""
    text = (
        GOOD
        + GOOD.split("\n", 1)[1].replace("flood-critical", "b")
        + ("  - {id: c, kind: threshold, metric: m, op: '>', value: high, severity: info}\n")
    )
    assert messages(text) == [
        "f.yaml:24: rules[2].value: Input should be a valid number, unable to parse string"
        " as a number"
    ]


def test_misspelt_field_is_an_error_not_a_default() -> None:
    """`treshold:` is an unknown field at its own line."""
    text = GOOD.replace("    value: 3.0\n", "    value: 3.0\n    treshold: 3\n")
    (msg,) = messages(text)
    assert msg.startswith("f.yaml:9: rules[0].treshold: unknown field")


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            ("kind: threshold", "kind: thresold"),
            "f.yaml:2: rules[0]: kind: unknown kind 'thresold'",
        ),
        (("for: 2m", "for: 5"), "f.yaml:10: rules[0].for: duration 5 needs a unit"),
        (("for: 2m", "for: 2 weeks"), "f.yaml:10: rules[0].for: '2 weeks' is not a duration"),
        (("severity: critical", "severity: urgent"), "f.yaml:11: rules[0].severity: Input should"),
        (("clear: 2.8", "clear: 3.5"), "f.yaml:2: rules[0]: clear (3.5) must be at or below"),
        (('op: ">"', 'op: "=>"'), "f.yaml:7: rules[0].op: Input should be"),
        (
            ("    metric: water_level_m\n", ""),
            "f.yaml:2: rules[0].metric: required field is missing",
        ),
        (("match: {asset_type: flood_gauge}", "match: {type: x}"), "f.yaml:4: rules[0].match.type"),
    ],
)
def test_each_problem_names_its_line(edit: tuple[str, str], expected: str) -> None:
    """Every kind of mistake maps back to file:line and key path."""
    (msg,) = messages(GOOD.replace(*edit))
    assert msg.startswith(expected), msg


def test_yaml_syntax_error_has_a_line() -> None:
    """A YAML syntax error names its line."""
    (msg,) = messages("rules:\n  - id: a\n    kind: [threshold\n")
    assert msg.startswith(("f.yaml:4: YAML syntax error", "f.yaml:3: YAML syntax error"))


def test_top_level_shape_errors() -> None:
    """Non-mapping files, unknown top-level keys and non-list rules are problems."""
    assert messages("- a\n") == ["f.yaml:1: the file must be a mapping with a `rules:` list"]
    assert messages("rules: []\nroutes: 1\n") == [
        "f.yaml:2: routes: unknown top-level key (only rules)"
    ]
    assert messages("rules: 3\n") == ["f.yaml:1: rules: must be a list of rules"]
    assert messages("") == []


def test_duplicate_ids_within_and_across_files(tmp_path: Path) -> None:
    """The second definition of an id is an error pointing at the first."""
    (tmp_path / "a.yaml").write_text(GOOD)
    (tmp_path / "b.yaml").write_text(GOOD)
    res = load_rules([tmp_path])
    assert [str(p) for p in res.problems] == [
        f"{tmp_path / 'b.yaml'}:2: rules[0].id: duplicate rule id 'flood-critical'"
        f" (first defined at {tmp_path / 'a.yaml'}:2)"
    ]
    assert len(res.rules) == 1
    assert messages(GOOD + GOOD.split("\n", 1)[1])[0].startswith(
        "f.yaml:13: rules[1].id: duplicate rule id"
    )


def test_area_rule_must_reference_an_existing_rule(tmp_path: Path) -> None:
    """area.rule naming no rule is an error at the area rule."""
    (tmp_path / "a.yaml").write_text(
        "rules:\n  - id: x\n    kind: composite\n    severity: info\n"
        "    area: {rule: nope, at_least: 2}\n"
    )
    res = load_rules([tmp_path])
    assert [p.message for p in res.problems] == ["rules[0].area.rule: no rule with id 'nope'"]


def test_folder_skips_routes_yaml_and_hidden_files(tmp_path: Path) -> None:
    """routes.yaml (alert routing) and editor temp files in a rules folder are not rule files."""
    (tmp_path / "routes.yaml").write_text("receivers: []\n")
    (tmp_path / ".#a.yaml").write_text("garbage: [")
    (tmp_path / "a.yml").write_text(GOOD)
    res = load_rules([tmp_path])
    assert res.problems == []
    assert [f.path.name for f in res.files] == ["a.yml"]


def test_missing_path_is_a_problem(tmp_path: Path) -> None:
    """A rule path that does not exist is reported, not ignored."""
    res = load_rules([tmp_path / "nope"])
    assert [p.message for p in res.problems] == ["no such file or directory"]


def test_check_command_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`hub rules check` prints file:line: message and exits 1; OK line and 0 when valid."""
    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    assert check_command([good]) == 0
    assert capsys.readouterr().out == "OK: 1 rules in 1 file(s)\n"
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("value: 3.0", "value: x"))
    assert check_command([good, bad]) == 1
    out = capsys.readouterr().out
    assert out.startswith(f"{bad}:8: rules[0].value:")


def test_shipped_rule_packs_pass_the_check(capsys: pytest.CaptureFixture[str]) -> None:
    """`hub rules check rules/` passes on the default packs (routes.yaml skipped)."""
    assert check_command([REPO_RULES]) == 0
    assert capsys.readouterr().out.startswith("OK: ")
    kinds = {r.kind for r in load_rules([REPO_RULES]).rules}
    assert kinds == {
        "threshold",
        "rate_of_change",
        "flatline",
        "no_data",
        "anomaly",
        "composite",
        "citizen_reports",
    }


def test_shipped_packs_cover_every_asset_type() -> None:
    """Every asset type of the device catalog has at least one rule matching it."""
    rules = load_rules([REPO_RULES]).rules
    covered = {r.match.asset_type for r in rules}
    assert {
        "flood_gauge",
        "water_main",
        "bridge",
        "manhole",
        "air_quality",
        "streetlight",
        "traffic_counter",
    } <= covered


def test_parse_rule_text_single_mapping() -> None:
    """The API's single-rule body validates with paths relative to the rule."""
    body = "id: x\nkind: threshold\nmetric: m\nop: '<'\nvalue: 1\nseverity: info\n"
    rule = parse_rule_text(body)
    assert rule.id == "x"
    with pytest.raises(RuleInvalid) as exc:
        parse_rule_text("id: a\nkind: threshold\nmetric: m\nop: '>'\nvalue: x\nseverity: info\n")
    assert [str(p) for p in exc.value.problems] == [
        "<request>:5: value: Input should be a valid number, unable to parse string as a number"
    ]


yaml_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["5m", "0", "2h", ">", "threshold", "composite", "critical", "-1s"]),
)
yaml_keys = st.sampled_from(
    [
        "id",
        "kind",
        "metric",
        "op",
        "value",
        "clear",
        "for",
        "severity",
        "match",
        "area",
        "all",
        "any",
        "window",
        "mode",
        "rules",
        "labels",
        "enabled",
        "x",
    ]
)
yaml_docs = st.recursive(
    yaml_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(yaml_keys, children, max_size=6)
    ),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300))
def test_arbitrary_text_never_raises(text: str) -> None:
    """Any text at all: load_text returns problems; parse_rule_text raises only RuleInvalid."""
    res = load_text(text, "f.yaml")
    assert all(p.line >= 1 for p in res.problems)
    with contextlib.suppress(RuleInvalid):
        parse_rule_text(text)


@settings(max_examples=80, deadline=None)
@given(yaml_docs)
def test_arbitrary_yaml_structures_never_raise(doc: object) -> None:
    """Structured YAML of rule-like keys: only problems, never an exception."""
    text = "rules:\n  - " + json.dumps(doc)
    res = load_text(text, "f.yaml")
    assert len(res.rules) + len(res.problems) >= 1
    with contextlib.suppress(RuleInvalid):
        parse_rule_text(json.dumps(doc))
