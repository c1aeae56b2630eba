"""Rules that can never fire: caught by `hub rules check`, the API, the hub's log and backtests."""

from __future__ import annotations

import io
import sqlite3
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import pytest
from rules_helpers import MIN, T0, rules_from
from structlog.testing import capture_logs

from hub.catalog import load_catalog
from hub.clock import FakeClock
from hub.messages import Reading
from hub.ports import RuleInvalid
from hub.registry.registry import Registry
from hub.rules.backtest import backtest_command, replay
from hub.rules.coverage import catalog_problems, unmatched_rules
from hub.rules.loader import check_command, load_rules
from hub.rules.service import RuleService
from hub.settings import RulesSettings
from hub.sqlite import connect

REPO_RULES = Path(__file__).resolve().parents[3] / "rules"
CATALOG = load_catalog()

TYPOS = """\
rules:
  - id: pm25-high
    match: {asset_type: air_quality}
    kind: threshold
    metric: pm25_ug_m3
    op: ">"
    value: 35
    severity: warning
  - id: flood-high
    match: {asset_type: flod_gauge}
    kind: threshold
    metric: water_level_m
    op: ">"
    value: 3
    severity: critical
"""


def problems_of(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "r.yaml"
    path.write_text(text)
    loaded = load_rules([path])
    assert loaded.problems == []
    return [str(p) for p in catalog_problems(loaded.rules, loaded.sources, CATALOG)]


def test_check_names_typos_at_their_line_with_a_suggestion(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A misspelt metric or asset type fails `hub rules check` at file:line with "did you mean"."""
    path = tmp_path / "typos.yaml"
    path.write_text(TYPOS)
    assert check_command([path]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"{path}:5: rules[0].metric: 'pm25_ug_m3' is not a metric of air_quality in the"
        " device catalog; did you mean 'pm2_5_ug_m3'?",
        f"{path}:10: rules[1].match.asset_type: 'flod_gauge' is not an asset type of the"
        " device catalog; did you mean 'flood_gauge'?",
    ]


def test_shipped_rule_packs_match_the_catalog() -> None:
    """Every shipped rule names asset types and metrics the catalog has."""
    loaded = load_rules([REPO_RULES])
    assert catalog_problems(loaded.rules, loaded.sources, CATALOG) == []


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        (
            "{id: r, kind: threshold, metric: pressure_bar, op: '<', value: 1, severity: info,"
            " match: {asset_type: flood_gauge}}",
            ":2: rules[0].metric: 'pressure_bar' is not a metric of flood_gauge in the device"
            " catalog (it is a metric of water_main)",
        ),
        (
            "{id: r, kind: threshold, metric: battery_volts, op: '<', value: 1, severity: info}",
            ":2: rules[0].metric: 'battery_volts' is not a metric of any asset type in the"
            " device catalog; did you mean 'battery_v'?",
        ),
        (
            "{id: r, kind: no_data, metric: water_levl_m, after: 5m, severity: info}",
            ":2: rules[0].metric: 'water_levl_m' is not a metric of any asset type",
        ),
        (
            "{id: r, kind: sensor_fault, severity: info, match: {asset_type: 'flood*x'}}",
            ":2: rules[0].match.asset_type: 'flood*x' matches no asset type of the device catalog",
        ),
        (
            "{id: r, kind: no_data, after: 5m, severity: info, match: {district: D01}}",
            ":2: rules[0].match.district: 'D01' can never match a district",
        ),
        (
            "{id: r, kind: no_data, after: 5m, severity: info, match: {district: 'Zone *'}}",
            ":2: rules[0].match.district: 'Zone *' can never match a district",
        ),
        (
            "{id: r, kind: no_data, after: 5m, severity: info, match: {district: alerts}}",
            ":2: rules[0].match.district: 'alerts' is reserved",
        ),
        (
            "{id: r, kind: no_data, after: 5m, severity: info, match: {device_id: 'fg/01'}}",
            ":2: rules[0].match.device_id: 'fg/01' can never match a device id",
        ),
    ],
)
def test_each_impossible_name_is_reported(tmp_path: Path, rule: str, expected: str) -> None:
    """Metrics of other types, unknown metrics, empty globs, bad district and device names."""
    (problem,) = problems_of(tmp_path, f"rules:\n  - {rule}\n")
    assert problem.startswith(f"{tmp_path / 'r.yaml'}{expected}"), problem


def test_composite_conditions_point_at_the_condition_and_must_share_a_device(
    tmp_path: Path,
) -> None:
    """A typo in a condition names all[i].metric; `all` over two asset types can never hold."""
    text = """\
rules:
  - id: typo
    kind: composite
    all:
      - {metric: pressure_bar, op: "<", value: 1}
      - {metric: flow_ls, op: ">", value: 1}
    severity: info
  - id: apart
    kind: composite
    all:
      - {metric: pressure_bar, op: "<", value: 1}
      - {metric: methane_pct_lel, op: ">", value: 1}
    severity: info
"""
    path = tmp_path / "r.yaml"
    assert problems_of(tmp_path, text) == [
        f"{path}:6: rules[0].all[1].metric: 'flow_ls' is not a metric of any asset type in the"
        " device catalog; did you mean 'flow_l_s'?",
        f"{path}:10: rules[1].all: no asset type of the device catalog has all of"
        " methane_pct_lel, pressure_bar, so these conditions can never hold together on one"
        " device",
    ]


def test_valid_globs_and_area_rules_pass(tmp_path: Path) -> None:
    """Globs that match catalog types and valid names, and a consistent area rule, pass."""
    text = """\
rules:
  - id: wet
    match: {asset_type: "*_gauge", district: "d0?", device_id: "fg-*"}
    kind: threshold
    metric: water_level_m
    op: ">"
    value: 3
    severity: critical
  - id: wet-area
    match: {asset_type: flood_gauge}
    kind: composite
    area: {rule: wet, at_least: 2}
    severity: emergency
"""
    assert problems_of(tmp_path, text) == []


def test_area_rule_counting_another_asset_type_is_reported(tmp_path: Path) -> None:
    """An area rule over manholes counting a flood-gauge rule can never count anyone."""
    text = """\
rules:
  - {id: wet, kind: threshold, metric: water_level_m, op: ">", value: 3, severity: info,
     match: {asset_type: flood_gauge}}
  - id: gas-area
    match: {asset_type: manhole}
    kind: composite
    area: {rule: wet, at_least: 2}
    severity: emergency
"""
    assert problems_of(tmp_path, text) == [
        f"{tmp_path / 'r.yaml'}:7: rules[1].area.rule: 'wet' applies to flood_gauge, this area"
        " rule to manhole: no device can be counted"
    ]


# ---------------------------------------------------------------------- service and API


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    conn: sqlite3.Connection = connect(tmp_path / "registry.db")
    yield Registry(conn, clock=FakeClock(), expected_interval_s=CATALOG.expected_interval_s)
    conn.close()


def make_service(tmp_path: Path, rules_dir: Path, registry: Registry) -> RuleService:
    settings = RulesSettings(
        paths=[str(rules_dir)], managed_dir=str(tmp_path / "managed"), watch=False
    )
    return RuleService(
        settings,
        tmp_path / "data",
        clock=FakeClock(),
        expected_interval_s=CATALOG.expected_interval_s,
        catalog=CATALOG,
        fleet=registry,
    )


def test_api_rule_write_with_a_typo_is_refused(tmp_path: Path, registry: Registry) -> None:
    """A rule sent through the API is checked against the catalog like a file."""
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    svc = make_service(tmp_path, rules_dir, registry)
    body = (
        "id: pm25\nmatch: {asset_type: air_quality}\nkind: threshold\n"
        "metric: pm25_ug_m3\nop: '>'\nvalue: 35\nseverity: warning\n"
    )
    with pytest.raises(RuleInvalid) as info:
        svc.create_rule(body, actor="alice")
    assert [str(p) for p in info.value.problems] == [
        "<request>:4: metric: 'pm25_ug_m3' is not a metric of air_quality in the device"
        " catalog; did you mean 'pm2_5_ug_m3'?"
    ]
    assert svc.get_rule("pm25") is None
    svc.create_rule(body.replace("pm25_ug_m3", "pm2_5_ug_m3"), actor="alice")
    assert svc.get_rule("pm25") is not None


FLEET_RULES = """\
rules:
  - {id: flood, kind: threshold, metric: water_level_m, op: ">", value: 3, severity: info,
     match: {asset_type: flood_gauge}}
  - {id: gas, kind: threshold, metric: methane_pct_lel, op: ">", value: 10, severity: info,
     match: {asset_type: manhole}}
  - {id: far, kind: threshold, metric: water_level_m, op: ">", value: 3, severity: info,
     match: {asset_type: flood_gauge, district: d09}}
  - {id: one, kind: threshold, metric: water_level_m, op: ">", value: 3, severity: info,
     match: {device_id: fg-d01-404}}
  - {id: silent, kind: no_data, after: 5m, severity: info}
"""


def test_hub_logs_rules_matching_no_known_series_at_load_and_reload(
    tmp_path: Path, registry: Registry
) -> None:
    """Rules no known device can feed are logged when loaded, and again after an edit."""
    registry.upsert_device("fg-d01-001", "d01", "flood_gauge", None, None, {})
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    (rules_dir / "r.yaml").write_text(FLEET_RULES)
    with capture_logs() as logs:
        svc = make_service(tmp_path, rules_dir, registry)
    assert svc.unmatched() == ["gas", "far", "one"]
    (warning,) = [e for e in logs if e["event"].startswith("rules match no known series")]
    assert warning["rules"] == [
        f"gas ({rules_dir / 'r.yaml'}:4)",
        f"far ({rules_dir / 'r.yaml'}:6)",
        f"one ({rules_dir / 'r.yaml'}:8)",
    ]
    registry.upsert_device("mh-d01-001", "d01", "manhole", None, None, {})
    registry.upsert_device("fg-d01-404", "d01", "flood_gauge", None, None, {})
    with capture_logs() as logs:
        svc.reload()
    assert svc.unmatched() == ["far"]
    assert any(e["event"].startswith("rules match no known series") for e in logs)


def test_no_devices_yet_is_not_a_warning_per_rule(tmp_path: Path, registry: Registry) -> None:
    """A fresh hub with an empty registry says so once instead of flagging every rule."""
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    (rules_dir / "r.yaml").write_text(FLEET_RULES)
    with capture_logs() as logs:
        svc = make_service(tmp_path, rules_dir, registry)
    assert svc.unmatched() == []
    assert [e["log_level"] for e in logs if "fleet" in e["event"]] == ["info"]
    assert unmatched_rules(rules_from(FLEET_RULES), CATALOG, registry) is None


# ---------------------------------------------------------------------- backtest


async def _aiter(items: Sequence[Reading]) -> AsyncIterator[Reading]:
    for r in items:
        yield r


def _gauge_history() -> list[Reading]:
    return [
        Reading("d01", "flood_gauge", "fg-d01-001", T0 + m * MIN, {"water_level_m": 1.0})
        for m in range(10)
    ]


async def test_replay_names_rules_that_matched_no_series() -> None:
    """Rules no reading of the history matched are named; rules that were evaluated are not."""
    done = await replay(rules_from(FLEET_RULES), _aiter(_gauge_history()), T0, T0 + 10 * MIN)
    assert done.unmatched == ["gas", "far", "one"]


async def test_backtest_command_says_which_rules_matched_no_series(tmp_path: Path) -> None:
    """The table ends with the rules that matched nothing; --json keeps stdout pure JSON."""
    path = tmp_path / "r.yaml"
    path.write_text(FLEET_RULES)
    out = io.StringIO()
    rc = await backtest_command(
        path, _aiter(_gauge_history()), T0, T0 + 10 * MIN, as_json=False, out=out
    )
    assert rc == 0
    assert out.getvalue().splitlines()[-1] == (
        "3 rule(s) matched no series in this history, so they could not fire: gas, far, one"
    )
    out, err = io.StringIO(), io.StringIO()
    rc = await backtest_command(
        path, _aiter(_gauge_history()), T0, T0 + 10 * MIN, as_json=True, out=out, err=err
    )
    assert out.getvalue().strip() == "[]"
    assert "gas, far, one" in err.getvalue()
