"""`hub rules backtest` on the embedded store: match.labels uses the registry's device labels."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest
from rules_helpers import MIN, T0

from hub.cli import main
from hub.clock import FakeClock
from hub.messages import Reading
from hub.registry.registry import Registry
from hub.sqlite import STATE_DB, connect
from hub.store.embedded import TELEMETRY_DB, EmbeddedStore

RULES = """\
rules:
  - id: critical-high
    match: {labels: {criticality: high}}
    kind: threshold
    metric: water_level_m
    op: ">"
    value: 3.0
    severity: critical
"""


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh HUB_DATA_DIR holding the readings, and no other HUB_* setting."""
    for key in [k for k in os.environ if k.startswith("HUB_")]:
        monkeypatch.delenv(key)
    data = tmp_path / "var"
    data.mkdir()
    monkeypatch.setenv("HUB_DATA_DIR", str(data))
    return data


def _store(data_dir: Path, readings: list[Reading]) -> None:
    async def write() -> None:
        store = EmbeddedStore(data_dir / TELEMETRY_DB)
        await store.open()
        try:
            await store.write(readings)
        finally:
            await store.close()

    asyncio.run(write())


def _backtest(tmp_path: Path, end_ms: int, capsys: pytest.CaptureFixture[str]) -> list[Any]:
    """The alerts `hub rules backtest RULES --json` prints for T0..end_ms."""
    rules = tmp_path / "r.yaml"
    rules.write_text(RULES)
    args = ["rules", "backtest", str(rules), "--start", str(T0), "--end", str(end_ms)]
    capsys.readouterr()  # the setup's own log lines
    assert main([*args, "--json"]) == 0
    alerts: list[Any] = json.loads(capsys.readouterr().out)
    return alerts


def test_backtest_matches_labels_from_the_registry(
    tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Only the gauge provisioned with criticality=high raises the labels rule's alert."""
    _store(
        data_dir,
        [
            Reading("d01", "flood_gauge", g, T0 + m * MIN, {"water_level_m": 3.5})
            for m in range(3)
            for g in ("g-high", "g-low")
        ],
    )
    conn = connect(data_dir / STATE_DB)
    registry = Registry(conn, clock=FakeClock(), expected_interval_s=lambda _a: 60.0)
    registry.upsert_device("g-high", "d01", "flood_gauge", None, None, {"criticality": "high"})
    registry.upsert_device("g-low", "d01", "flood_gauge", None, None, {"criticality": "low"})
    conn.close()
    alerts = _backtest(tmp_path, T0 + 10 * MIN, capsys)
    assert [(a["rule"], a["source"]) for a in alerts] == [("critical-high", "g-high")]


def test_backtest_without_a_registry_matches_no_labels(
    tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With no hub database in HUB_DATA_DIR, labels rules match nothing (and nothing breaks)."""
    _store(data_dir, [Reading("d01", "flood_gauge", "g-high", T0, {"water_level_m": 3.5})])
    assert _backtest(tmp_path, T0 + MIN, capsys) == []
    assert not (data_dir / STATE_DB).exists(), "a backtest creates no hub database"
