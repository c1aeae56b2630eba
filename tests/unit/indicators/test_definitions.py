"""Indicator definitions: the shipped files, and file:line errors for broken ones."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.catalog import load_catalog
from hub.cli import main
from hub.indicators.definitions import BUILT_IN_IDS, load_definitions, parse_definitions
from hub.rules.loader import expand_paths

REPO = Path(__file__).resolve().parents[3]
SHIPPED = REPO / "rules" / "indicators"
CATALOG = load_catalog()

GOOD = """\
indicators:
  - id: pm10_days_above_45
    title: Days with PM10 above 45
    unit: days
    description: d
    formula: f
    source: telemetry
    direction: lower_is_better
    measure:
      kind: days_mean_above
      asset_type: air_quality
      metric: pm10_ug_m3
      threshold: 45
"""


def problems(text: str) -> list[str]:
    return [str(p) for p in parse_definitions(text, "ind.yaml", CATALOG).problems]


def test_shipped_definitions_load_and_define_the_built_in_ids() -> None:
    """The shipped files are valid against the catalog and hold every CONTRACT §8 id."""
    found = load_definitions([SHIPPED], CATALOG)
    assert found.problems == []
    assert set(BUILT_IN_IDS) <= set(found.definitions)
    headline = [d.id for d in found.definitions.values() if d.headline]
    assert "data_completeness_pct" in headline


def test_a_valid_domain_definition_loads_with_its_threshold() -> None:
    """A definition's threshold is data: PM10 days over 45 µg/m³ needs no code."""
    found = parse_definitions(GOOD, "ind.yaml", CATALOG)
    assert found.problems == []
    d = found.definitions["pm10_days_above_45"]
    assert d.measure.threshold == 45  # type: ignore[union-attr]
    assert not d.is_ratio
    assert (
        d.version
        == parse_definitions(GOOD.replace("    unit", "    # note\n    unit"), "x", CATALOG)
        .definitions["pm10_days_above_45"]
        .version
    )


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("threshold: 45", "threshold: high"), "ind.yaml:13: indicators[0].measure.threshold:"),
        (
            ("    formula: f\n", "    formula: f\n    colour: red\n"),
            "ind.yaml:7: indicators[0].colour: unknown field",
        ),
        (
            ("source: telemetry", "source: alerts"),
            "ind.yaml:7: indicators[0].source: a days_mean_above measure is computed from"
            " telemetry",
        ),
        (
            ("metric: pm10_ug_m3", "metric: pm10"),
            "ind.yaml:12: indicators[0].measure.metric: 'pm10' is not a metric of air_quality",
        ),
        (
            ("asset_type: air_quality", "asset_type: volcano"),
            "ind.yaml:11: indicators[0].measure.asset_type: 'volcano' is not an asset type",
        ),
        (
            ("kind: days_mean_above", "kind: magic"),
            "ind.yaml:9: indicators[0].measure: kind must be one of completeness,",
        ),
        (("direction: lower_is_better", "direction: up"), "ind.yaml:8: indicators[0].direction:"),
        (
            ("threshold: 45", "threshold: .nan"),
            "ind.yaml:13: indicators[0].measure.threshold: must be a finite number",
        ),
    ],
)
def test_problems_name_file_line_and_key(change: tuple[str, str], expected: str) -> None:
    """Each problem is `file:line: indicators[i].key: message`."""
    found = problems(GOOD.replace(*change))
    assert any(p.startswith(expected) for p in found), found


def test_duplicate_ids_are_refused_with_the_first_place() -> None:
    """The same id twice is a problem naming where it was first defined."""
    text = GOOD + GOOD.split("indicators:\n", 1)[1]
    found = problems(text)
    assert found
    assert "duplicate indicator id 'pm10_days_above_45'" in found[0]
    assert "first defined at ind.yaml:2" in found[0]


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=300))
def test_loading_never_raises_on_any_text(text: str) -> None:
    """Any text yields definitions or problems, never an exception."""
    parse_definitions(text, "x.yaml", CATALOG)


def test_rule_loader_skips_the_indicators_folder(tmp_path: Path) -> None:
    """Indicator files among the rule files are not read as rules."""
    (tmp_path / "indicators").mkdir()
    (tmp_path / "indicators" / "mine.yaml").write_text(GOOD)
    (tmp_path / "flood.yaml").write_text("rules: []\n")
    files, problems_found = expand_paths([tmp_path])
    assert files == [tmp_path / "flood.yaml"]
    assert problems_found == []


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """rules/ with a routing file and the shipped indicator definitions, no HUB_ settings."""
    for key in [k for k in os.environ if k.startswith("HUB_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rules" / "indicators").mkdir(parents=True)
    (tmp_path / "rules" / "routes.yaml").write_text(
        "receivers: [{name: m, mqtt: {}}]\nroute: {receivers: [m]}\n"
    )
    for f in SHIPPED.glob("*.yaml"):
        (tmp_path / "rules" / "indicators" / f.name).write_text(f.read_text())
    return tmp_path


def test_rules_check_counts_indicator_files(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`hub rules check` validates the configured indicator definitions too."""
    assert main(["rules", "check"]) == 0
    out = capsys.readouterr().out
    assert "indicators: 19 in 3 file(s)" in out


def test_rules_check_fails_on_a_broken_indicator_file(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A broken definition is exit 1 with its file:line, named directly or by folder."""
    path = workdir / "rules" / "indicators" / "mine.yaml"
    path.write_text(GOOD.replace("metric: pm10_ug_m3", "metric: pm10"))
    assert main(["rules", "check"]) == 1
    assert "rules/indicators/mine.yaml:12: indicators[0].measure.metric" in capsys.readouterr().out
    assert main(["rules", "check", str(path)]) == 1


def test_rules_check_wants_the_built_in_ids_in_a_folder(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A definitions folder without a built-in id (CONTRACT §8) is a problem."""
    (workdir / "rules" / "indicators" / "data_quality.yaml").unlink()
    assert main(["rules", "check"]) == 1
    assert "built-in indicators missing: data_completeness_pct" in capsys.readouterr().out
