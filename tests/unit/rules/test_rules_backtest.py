"""Backtests: a known history through the same engine yields exactly the expected alerts."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from rules_helpers import MIN, T0, rules_from

from hub.messages import Reading, RuleState
from hub.rules.backtest import alerts_from_events, backtest, backtest_command

RULES = """\
rules:
  - id: high
    kind: threshold
    metric: water_level_m
    op: ">"
    value: 3.0
    clear: 2.8
    for: 2m
    severity: critical
  - id: silent
    kind: no_data
    after: 5m
    severity: warning
  - id: area
    kind: composite
    area: {rule: high, at_least: 2}
    severity: emergency
"""


def history() -> list[Reading]:
    """Two gauges for an hour, one reading a minute.

    g1: above 3.0 from minute 10 to 19 (inclusive), then 2.9 (inside the band), then 2.0
    from minute 25. g2: above 3.0 from minute 12 to 30, silent from minute 40 on.
    """
    out = []
    for m in range(60):
        g1 = 3.5 if 10 <= m < 20 else 2.9 if 20 <= m < 25 else 2.0
        out.append(Reading("d01", "flood_gauge", "g1", T0 + m * MIN, {"water_level_m": g1}))
        if m < 40:
            g2 = 3.4 if 12 <= m <= 30 else 1.0
            out.append(
                Reading("d01", "flood_gauge", "g2", T0 + m * MIN + 500, {"water_level_m": g2})
            )
    return out


async def _aiter(items: Sequence[Reading]) -> AsyncIterator[Reading]:
    for r in items:
        yield r


async def test_backtest_yields_exactly_the_expected_alerts() -> None:
    """for:, hysteresis, the area rule and no_data all behave as they would have live."""
    events = await backtest(rules_from(RULES), _aiter(history()), T0, T0 + 60 * MIN)
    alerts = alerts_from_events(events)
    got = [
        (
            a.rule_id,
            a.source,
            (a.fired_ms - T0) / 1000,
            None if a.resolved_ms is None else (a.resolved_ms - T0) / 1000,
        )
        for a in alerts
    ]
    assert got == [
        ("high", "g1", 720.0, 1500.0),  # pending at 10m, fires 12m; 2.9 held; resolves at 25m
        ("area", "_area", 840.5, 1500.0),  # both firing from 14m until g1 resolves
        ("high", "g2", 840.5, 1860.5),  # pending 12m, fires 14m, resolves at 31m
        ("silent", "g2", 2650.0, None),  # last reading 39m00.5s; > 5m silent at the 44m10s tick
    ]
    assert all(e.state is not RuleState.PENDING or e.rule_id == "high" for e in events)


async def test_backtest_ignores_readings_outside_the_range() -> None:
    """Only readings in [start, end) are replayed."""
    events = await backtest(rules_from(RULES), _aiter(history()), T0 + 30 * MIN, T0 + 35 * MIN)
    assert [e for e in events if e.state is RuleState.FIRING] == []


async def test_backtest_command_table_and_json(tmp_path: Path) -> None:
    """The command prints a table (or JSON) of the alerts, with fired/resolved times."""
    path = tmp_path / "r.yaml"
    path.write_text(RULES)
    out = io.StringIO()
    rc = await backtest_command(path, _aiter(history()), T0, T0 + 60 * MIN, as_json=False, out=out)
    assert rc == 0
    lines = out.getvalue().splitlines()
    assert lines[0].split()[:4] == ["rule", "source", "district", "fired"]
    assert lines[1].split()[:6] == [
        "high",
        "g1",
        "d01",
        "2025-11-24T16:12:00Z",
        "2025-11-24T16:25:00Z",
        "critical",
    ]
    assert lines[-1].startswith("4 alert(s) from")

    out = io.StringIO()
    rc = await backtest_command(path, _aiter(history()), T0, T0 + 60 * MIN, as_json=True, out=out)
    doc = json.loads(out.getvalue())
    assert rc == 0
    assert [d["rule"] for d in doc] == ["high", "area", "high", "silent"]
    assert doc[3]["resolved_at"] is None
    assert doc[0]["severity"] == "critical"


async def test_backtest_command_refuses_broken_rules(tmp_path: Path) -> None:
    """Broken rule files print their problems and exit 1."""
    path = tmp_path / "r.yaml"
    path.write_text(RULES.replace("value: 3.0", "value: x"))
    out = io.StringIO()
    assert await backtest_command(path, _aiter([]), T0, T0 + MIN, as_json=False, out=out) == 1
    assert out.getvalue().startswith(f"{path}:6: rules[0].value:")


async def test_backtest_command_uses_the_catalog_intervals(tmp_path: Path) -> None:
    """no_data in a backtest uses the catalog interval: 5-minute streetlights are not silent."""
    path = tmp_path / "r.yaml"
    path.write_text("rules:\n  - {id: quiet, kind: no_data, intervals: 3, severity: info}\n")
    lights = [
        Reading("d01", "streetlight", "sl1", T0 + m * 5 * MIN, {"power_w": 50.0}) for m in range(12)
    ]
    out = io.StringIO()
    rc = await backtest_command(path, _aiter(lights), T0, T0 + 60 * MIN, as_json=True, out=out)
    assert rc == 0
    assert json.loads(out.getvalue()) == []
