"""The routing file: validation with file:line errors, durations, tree semantics."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.alerts.routing import (
    RoutePlanner,
    RoutesInvalid,
    load_routes,
    parse_routes,
    plan_routes,
)
from hub.messages import Severity
from hub.responders import check_routes, load_routes_file, routes_test
from hub.settings import ConfigError

REPO = Path(__file__).resolve().parents[3]


def _labels(**kw: str) -> dict[str, str]:
    base = {
        "district": "d01",
        "asset_type": "bridge",
        "severity": "warning",
        "rule_id": "r",
        "source": "b-1",
    }
    return {**base, **kw}


def test_repository_routes_file_is_valid() -> None:
    """rules/routes.yaml (the demo routing) passes the check."""
    assert check_routes(REPO / "rules" / "routes.yaml") == []


def test_demo_routes_send_everything_to_mqtt_and_teams_by_asset() -> None:
    """Demo tree: every alert reaches MQTT, floods the flood team; emergencies escalate."""
    routes = load_routes(REPO / "rules" / "routes.yaml")
    flood = plan_routes(routes.route, _labels(asset_type="flood_gauge"), Severity.WARNING)
    assert [p.receivers for p in flood] == [("mqtt",), ("flood-team",)]
    emergency = plan_routes(
        routes.route, _labels(asset_type="manhole", severity="emergency"), Severity.EMERGENCY
    )
    receivers = [r for p in emergency for r in p.receivers]
    assert receivers == ["mqtt", "duty-officer", "gas-team"]
    steps = [s for p in emergency for s in p.escalate]
    assert (600_000, ("emergency-manager",)) in steps


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        (
            "receivers: []\nroute:\n  receivers: [nobody]\n",
            3,
            "route.receivers.0: no receiver named 'nobody'",
        ),
        (
            "receivers:\n  - name: a\n    mqtt: {}\nroute:\n  routes:\n"
            "    - match: {district: d01}\n      receivers: [a]\n      wait: 5s\n",
            8,
            "route.routes.0.wait: unknown field",
        ),
        (
            "receivers:\n  - name: a\n    mqtt: {}\n    log: {}\nroute: {receivers: [a]}\n",
            2,
            "receivers.0: needs exactly one of mqtt, webhook, apprise, log",
        ),
        (
            "receivers:\n  - name: a\n    mqtt: {}\nroute:\n  receivers: [a]\n  group_wait: soon\n",
            6,
            "route.group_wait: 'soon' is not a duration",
        ),
        (
            "receivers:\n  - name: a\n    mqtt: {}\nroute:\n  receivers: [a]\n  routes:\n"
            "    - min_severity: huge\n      receivers: [a]\n",
            7,
            "route.routes.0.min_severity",
        ),
        ("receivers: [\n", 2, "YAML"),
        ("- just\n- a list\n", 1, "must be a mapping"),
    ],
)
def test_problems_name_file_line_and_key(
    tmp_path: Path, text: str, line: int, fragment: str
) -> None:
    """Each problem says file:line: key.path: message."""
    path = tmp_path / "routes.yaml"
    path.write_text(text)
    problems = check_routes(path)
    assert problems, "a broken file must not pass"
    assert problems[0].file == str(path)
    assert problems[0].line == line, problems
    assert fragment in problems[0].message, problems
    assert str(problems[0]).startswith(f"{path}:{line}: ")
    with pytest.raises(ConfigError):
        load_routes_file(path)


def test_unparsable_apprise_url_is_a_config_error(tmp_path: Path) -> None:
    """An Apprise URL that Apprise cannot parse is reported at its line."""
    path = tmp_path / "routes.yaml"
    path.write_text(
        "receivers:\n  - name: sms\n    apprise:\n      urls:\n        - json://127.0.0.1:9/ok\n"
        "        - nonsense-url\nroute: {receivers: [sms]}\n"
    )
    problems = check_routes(path)
    assert [(p.line, p.message) for p in problems] == [
        (6, "receivers.0.apprise.urls.1: Apprise cannot parse this URL")
    ]


def test_missing_file_falls_back_to_mqtt_only(tmp_path: Path) -> None:
    """Without a routing file every alert goes to MQTT; an unreadable one is a problem."""
    routes = load_routes_file(tmp_path / "absent.yaml")
    assert [r.name for r in routes.receivers] == ["mqtt"]
    assert check_routes(tmp_path / "absent.yaml")[0].line == 0
    with pytest.raises(RoutesInvalid):
        load_routes(tmp_path / "absent.yaml")


TREE = """
receivers: [{name: a, log: {}}, {name: b, log: {}}, {name: c, log: {}}, {name: d, log: {}}]
route:
  receivers: [d]
  group_wait: 1m
  routes:
    - match: {district: [d01, d02]}
      receivers: [a]
      routes:
        - match: {source: "wm-*"}
          receivers: [b]
          repeat_interval: 5m
    - match: {district: d01}
      receivers: [c]
"""


def test_first_match_wins_unless_continue_and_children_inherit() -> None:
    """Depth-first: the deepest match gets the alert; siblings stop; timings inherit."""
    routes, problems, _ = parse_routes(TREE, "t.yaml")
    assert routes is not None, problems
    deep = plan_routes(routes.route, _labels(source="wm-7"), Severity.INFO)
    assert [(p.receivers, p.group_wait_ms, p.repeat_ms) for p in deep] == [
        (("b",), 60_000, 300_000)
    ]
    mid = plan_routes(routes.route, _labels(district="d02"), Severity.INFO)
    assert [p.receivers for p in mid] == [("a",)]
    root = plan_routes(routes.route, _labels(district="d09"), Severity.INFO)
    assert [p.receivers for p in root] == [("d",)]


@given(
    alerts=st.lists(
        st.tuples(
            st.sampled_from(["d01", "d02", "d09"]),
            st.sampled_from(["wm-1", "wm-7", "b-1", "fg-3"]),
            st.sampled_from(list(Severity)),
            st.booleans(),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_planner_remembers_plans_without_changing_them(
    alerts: list[tuple[str, str, Severity, bool]],
) -> None:
    """The memo keys on what the tree matches (district, source) and the severity:
    every answer is the tree's own, whatever came before, and labels the tree
    never looks at do not make a new plan."""
    routes, problems, _ = parse_routes(TREE, "t.yaml")
    assert routes is not None, problems
    planner = RoutePlanner(routes.route)
    for district, source, severity, extra in alerts:
        labels = _labels(district=district, source=source, severity=severity.label)
        if extra:
            labels["pump"] = "p-9"  # a label no route matches on
        assert list(planner.plan(labels, severity)) == plan_routes(routes.route, labels, severity)
    wm = _labels(source="wm-1")
    assert planner.plan(wm, Severity.INFO) is planner.plan({**wm, "rule_id": "x"}, Severity.INFO)


def test_root_route_with_matchers_is_refused() -> None:
    """The root route matches everything; matchers there are an error, not ignored."""
    _, problems, _ = parse_routes(
        "receivers: [{name: a, log: {}}]\nroute:\n  match: {district: d01}\n  receivers: [a]\n",
        "t.yaml",
    )
    assert problems
    assert problems[0].line == 3


@given(st.text(max_size=200))
def test_routes_parser_never_raises(text: str) -> None:
    """Arbitrary text yields a model or problems, never an exception."""
    model, problems, _ = parse_routes(text, "fuzz.yaml")
    assert (model is None) == bool(problems)


def test_routes_test_explains_where_an_alert_goes() -> None:
    """routes_test lists the receivers and escalation an alert with given labels reaches."""
    plans = routes_test(
        REPO / "rules" / "routes.yaml",
        {"district": "d03", "asset_type": "manhole", "severity": "critical", "source": "mh-1"},
    )
    assert [p.receivers for p in plans] == [("mqtt",), ("gas-team",)]
    assert plans[1].escalate == ((600_000, ("duty-officer",)),)
