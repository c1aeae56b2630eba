"""`hub indicators report` (HTML a person reads, and CSV) and `hub indicators rebuild`."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import re
from pathlib import Path

import pytest

from hub.catalog import load_catalog
from hub.cli import main
from hub.clock import FakeClock
from hub.indicators.definitions import load_definitions
from hub.indicators.fleet import interval_ms_of
from hub.indicators.periods import CityCalendar
from hub.indicators.report import build_report, write_csv, write_html
from hub.indicators.service import IndicatorService
from hub.indicators.sqlite_store import SqliteIndicatorStore
from hub.indicators.updater import IndicatorUpdater
from hub.messages import Reading, Rejection
from hub.sqlite import STATE_DB
from hub.store.embedded import EmbeddedStore

REPO = Path(__file__).resolve().parents[3]
CATALOG = load_catalog()
DEFS = list(load_definitions([REPO / "rules" / "indicators"], CATALOG).definitions.values())
DAY = 86_400_000
T0 = 1_767_225_600_000  # 2026-01-01T00:00Z


def readings() -> list[Reading]:
    """Three days of two gauges; the d07 one loses every fifth reading on day 2."""
    out = []
    for i in range(3 * 1440):
        ts = T0 + i * 60_000
        out.append(
            Reading("d03", "flood_gauge", "fg-3", ts, {"water_level_m": 1.0}, received_ms=ts + 500)
        )
        if not (1440 <= i < 2880 and i % 5 == 0):
            out.append(
                Reading(
                    "d07", "flood_gauge", "fg-7", ts, {"water_level_m": 1.0}, received_ms=ts + 500
                )
            )
    return out


def fill(data_dir: Path, clock: FakeClock) -> SqliteIndicatorStore:
    store = SqliteIndicatorStore(data_dir / STATE_DB)
    updater = IndicatorUpdater(
        store,
        CityCalendar("UTC"),
        intervals=interval_ms_of(CATALOG.expected_interval_s),
        clock=clock,
        definitions=DEFS,
    )
    updater.observe(readings())
    bad = Rejection(
        "city/d07/flood_gauge/fg-7/telemetry",
        "bad_metric",
        "x",
        b"",
        T0 + 2 * DAY + 5,
        "fg-7",
        "d07",
    )
    updater.observe([], rejections=[bad, bad])
    updater.flush_now()
    return store


@pytest.fixture
def service(tmp_path: Path) -> IndicatorService:
    clock = FakeClock(T0 + 3 * DAY)
    store = fill(tmp_path, clock)
    return IndicatorService(
        store,
        CityCalendar("UTC"),
        DEFS,
        intervals=interval_ms_of(CATALOG.expected_interval_s),
        clock=clock,
        responses=None,
        devices=store.devices,
    )


def test_html_report_is_a_self_contained_page_with_tables_and_charts(
    service: IndicatorService,
) -> None:
    """City and district sections, charts as inline SVG, the change since the day before,
    the worst devices, the definitions; no script and nothing fetched from elsewhere."""
    report = build_report(service, "day", T0, T0 + 3 * DAY, now_ms=T0 + 3 * DAY)
    out = io.StringIO()
    write_html(report, out)
    html = out.getvalue()
    assert '<h2 id="city">The city</h2>' in html
    assert "District d07" in html
    assert html.count("<svg") >= 10
    assert "<script" not in html.lower()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    assert "Devices pulling data completeness down" in html
    assert "fg-7" in html
    assert "(better)" in html  # d07 recovered on day 3
    assert "Readings rejected in 2026-01-03, by reason" in html
    assert "<td>bad_metric</td><td>2</td>" in html
    assert "Readings received ÷ readings expected" not in html  # formulas come from the files
    assert "100 × slots with at least one reading ÷ slots expected" in html


def test_csv_report_has_a_row_per_indicator_period_and_district(service: IndicatorService) -> None:
    """Rows carry value, numerator, denominator and whether the target is met."""
    report = build_report(service, "day", T0, T0 + 3 * DAY, district="d07", now_ms=T0 + 3 * DAY)
    out = io.StringIO()
    write_csv(report, out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    completeness = [r for r in rows if r["indicator"] == "data_completeness_pct"]
    assert [r["period"] for r in completeness] == ["2026-01-01", "2026-01-02", "2026-01-03"]
    assert {r["district"] for r in rows} == {"d07"}
    day2 = completeness[1]
    assert (day2["numerator"], day2["denominator"]) == ("1152", "1440")
    assert day2["meets_target"] == "false"
    assert completeness[0]["meets_target"] == "true"


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key in [k for k in os.environ if k.startswith("HUB_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("HUB_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("HUB_INDICATORS__PATHS", str(REPO / "rules" / "indicators"))
    monkeypatch.setenv("HUB_ALERTS__ROUTES_PATH", str(REPO / "rules" / "routes.yaml"))
    return tmp_path


def test_cli_report_writes_html_or_csv_and_refuses_other_files(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`hub indicators report … --out FILE.html|.csv`; another suffix is exit 2."""
    fill(data_dir, FakeClock(T0 + 3 * DAY)).close()
    start, end = str(T0), str(T0 + 3 * DAY)
    assert (
        main(
            [
                "indicators",
                "report",
                "--period",
                "day",
                "--start",
                start,
                "--end",
                end,
                "--out",
                str(data_dir / "r.html"),
            ]
        )
        == 0
    )
    assert "<h1>Indicators of the city" in (data_dir / "r.html").read_text()
    assert (
        main(
            [
                "indicators",
                "report",
                "--period",
                "week",
                "--start",
                start,
                "--end",
                end,
                "--district",
                "d03",
                "--out",
                str(data_dir / "r.csv"),
            ]
        )
        == 0
    )
    assert (data_dir / "r.csv").read_text().startswith("indicator,title,unit,period,")
    assert (
        main(
            [
                "indicators",
                "report",
                "--period",
                "day",
                "--start",
                start,
                "--end",
                end,
                "--out",
                str(data_dir / "r.pdf"),
            ]
        )
        == 2
    )
    assert "--out must end in .csv or .html" in capsys.readouterr().err


def test_cli_rebuild_recomputes_from_the_embedded_store(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`hub indicators rebuild --start T --end T` reads the stored history and rebuilds
    the hours, which then hold what the store has."""

    async def store_them() -> None:
        telemetry = EmbeddedStore(data_dir / "telemetry.db")
        await telemetry.open()
        await telemetry.write(readings())
        await telemetry.close()

    asyncio.run(store_them())
    assert main(["indicators", "rebuild", "--start", str(T0), "--end", str(T0 + 3 * DAY)]) == 0
    assert (
        "rebuilt 144 device-hours of 2 devices from 8352 stored readings" in capsys.readouterr().out
    )
    store = SqliteIndicatorStore(data_dir / STATE_DB)
    rows = {r.district: r.totals.received for r in store.group_days(T0 + DAY, T0 + 2 * DAY)}
    store.close()
    assert rows == {"d03": 1440, "d07": 1152}
