"""An API over in-memory ports (see fakes.py) and the real embedded store, with keys per role."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from hub.api.app import create_app
from hub.api.context import ApiContext
from hub.api.keys import create_key
from hub.catalog import load_catalog
from hub.clock import FakeClock
from hub.indicators.definitions import load_definitions
from hub.indicators.fleet import interval_ms_of
from hub.indicators.periods import CityCalendar
from hub.indicators.service import IndicatorService
from hub.indicators.sqlite_store import SqliteIndicatorStore
from hub.indicators.updater import IndicatorUpdater
from hub.messages import Reading
from hub.opendata.service import OpenData
from hub.opendata.state import SqliteOpenDataState
from hub.reports import ReportService, SqliteReportStore, load_services
from hub.reports.store import NewContact, NewReport
from hub.settings import ApiSettings, Settings
from hub.sqlite import STATE_DB, connect
from hub.store.base import TelemetryStore
from hub.store.embedded import EmbeddedStore
from tests.unit.api.fakes import (
    FakeAlerts,
    FakeDeadLetters,
    FakeEvents,
    FakeHealth,
    FakeRegistry,
    FakeRules,
)

NOW_MS = 1_764_000_000_000
#: The services shipped with the hub (rules/services.yaml).
SERVICES_FILE = Path(__file__).resolve().parents[3] / "rules" / "services.yaml"
REPO = Path(__file__).resolve().parents[3]


@dataclass
class Api:
    """The app under test and everything behind it."""

    client: TestClient
    ctx: ApiContext
    clock: FakeClock
    registry: FakeRegistry
    alerts: FakeAlerts
    rules: FakeRules
    dead_letters: FakeDeadLetters
    events: FakeEvents
    health: FakeHealth
    store: TelemetryStore
    reports: ReportService
    indicators: IndicatorService
    opendata: OpenData
    keys: dict[str, str] = field(default_factory=dict)

    def auth(self, who: str) -> dict[str, str]:
        """Authorization header of the key called ``who`` (a role, or a scoped key's name)."""
        return {"Authorization": f"Bearer {self.keys[who]}"}


def make_api(
    tmp_path: Path, settings: Settings | None = None, store: TelemetryStore | None = None
) -> Iterator[Api]:
    """Build an Api with fakes seeded for districts d03 and d07, over the shipped catalog.

    Without ``store`` it opens (and later closes) an embedded store of its own; a
    ``store`` passed in must already be open and is left to the caller.
    """
    clock = FakeClock(NOW_MS)
    conn = connect(tmp_path / STATE_DB)
    events = FakeEvents()
    registry = FakeRegistry()
    alerts = FakeAlerts(clock, events)
    rules = FakeRules()
    dead = FakeDeadLetters()
    health = FakeHealth()
    own_store = store is None
    if store is None:
        store = EmbeddedStore(tmp_path / "telemetry.db")
        asyncio.run(store.open())
    registry.add("fg-d03-1", "d03", "flood_gauge", latest={"water_level_m": 1.2, "battery_v": 3.6})
    registry.add("fg-d07-1", "d07", "flood_gauge", latest={"water_level_m": 0.8})
    registry.add("mh-d07-1", "d07", "manhole", latest={"h2s_ppm": 4.0, "water_level_m": 0.1})
    registry.add("aq-d07-1", "d07", "air_quality", status="offline", stale=True)
    rules.add("flood-critical", managed=False, firing=1)
    rules.add("managed-rule")
    dead.add("city/d03/flood_gauge/fg-d03-1/telemetry", "invalid_json", "fg-d03-1", "d03")
    dead.add("city/d07/manhole/mh-d07-1/telemetry", "bad_metric", "mh-d07-1", "d07")
    dead.add("garbage", "bad_topic", None, None)
    settings = settings or Settings(data_dir=tmp_path)
    catalog = load_catalog()
    opendata_conn = connect(tmp_path / STATE_DB)
    opendata = OpenData(
        settings.open_data, catalog, registry, store, SqliteOpenDataState(opendata_conn), clock
    )
    report_store = SqliteReportStore(conn)
    seed_reports(report_store)
    reports = ReportService(
        settings.reports,
        report_store,
        load_services(SERVICES_FILE, catalog.asset_types()),
        clock=clock,
        alerts=alerts,
        devices=registry,
    )
    indicators = _indicators(tmp_path, clock, alerts)
    ctx = ApiContext(
        settings=settings,
        clock=clock,
        conn=conn,
        registry=registry,
        store=store,
        alerts=alerts,
        rules=rules,
        dead_letters=dead,
        health=health,
        events=events,
        catalog=catalog,
        reports=reports,
        indicators=indicators,
        opendata=opendata,
    )
    app = create_app(ctx)
    api = Api(
        TestClient(app),
        ctx,
        clock,
        registry,
        alerts,
        rules,
        dead,
        events,
        health,
        store,
        reports,
        indicators,
        opendata,
    )
    for role in ("viewer", "operator", "rule_author", "admin"):
        api.keys[role] = create_key(conn, role=role, name=f"{role}-key", now_ms=NOW_MS)
    api.keys["d07"] = create_key(
        conn, role="admin", name="d07-admin", scopes={"district": ["d07"]}, now_ms=NOW_MS
    )
    api.keys["d07-operator"] = create_key(
        conn, role="operator", name="d07-operator", scopes={"districts": ["d07"]}, now_ms=NOW_MS
    )
    api.keys["manhole"] = create_key(
        conn, role="operator", name="manhole-op", scopes={"asset_type": ["manhole"]}, now_ms=NOW_MS
    )
    with api.client:
        yield api
    if own_store:
        asyncio.run(store.close())
    opendata_conn.close()
    conn.close()


#: The reporter of the seeded reports (no public answer may carry any of it).
REPORTER = {
    "email": "ada.reporter@example.org",
    "first_name": "Adaline",
    "last_name": "Reporterson",
    "phone": "+33 1 98 76 54 32",
}


def seed_reports(store: SqliteReportStore) -> None:
    """Reports 1 and 2: flooded streets in d03 near fg-d03-1, report 1 with a reporter."""
    for n, (lat, lon) in enumerate(((48.8566, 2.3522), (48.8567, 2.3524)), start=1):
        report = NewReport(
            service_code="flooded_street",
            service_name="Flooded street or underpass",
            description=f"Water up to the knee in the underpass ({n})",
            address=None,
            address_id=None,
            lat=lat,
            lon=lon,
            media_url=None,
            attributes={"depth": ("knee",)},
            district="d03",
            asset_type="flood_gauge",
            requested_ms=NOW_MS - 60_000 * (3 - n),
            token=None,
        )
        contact = NewContact(
            **(REPORTER if n == 1 else dict.fromkeys(REPORTER)),
            device_id=None,
            account_id=None,
            expires_ms=NOW_MS + 86_400_000,
        )
        store.insert(report, contact, "citizen")


def _indicators(tmp_path: Path, clock: FakeClock, alerts: FakeAlerts) -> IndicatorService:
    """Real indicators over the shipped definitions, with an hour of readings of the
    flood gauges of d03 and d07 (the d07 gauge missing a quarter of them)."""
    catalog = load_catalog()
    defs = list(load_definitions([REPO / "rules" / "indicators"], catalog).definitions.values())
    store = SqliteIndicatorStore(tmp_path / STATE_DB)
    calendar = CityCalendar("UTC")
    intervals = interval_ms_of(catalog.expected_interval_s)
    updater = IndicatorUpdater(store, calendar, intervals=intervals, clock=clock, definitions=defs)
    start = NOW_MS - 3_600_000
    readings = [
        Reading(district, "flood_gauge", device, start + i * 60_000, {"water_level_m": 1.0})
        for district, device, every in (("d03", "fg-d03-1", 1), ("d07", "fg-d07-1", 4))
        for i in range(60)
        if every == 1 or i % every
    ]
    updater.observe(readings)
    updater.flush_now()
    store.close()
    return IndicatorService(
        SqliteIndicatorStore(tmp_path / STATE_DB),
        calendar,
        defs,
        intervals=intervals,
        clock=clock,
        responses=alerts,
        devices=lambda: list(updater.devices.values()),
    )


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    """The API over fakes, default settings."""
    yield from make_api(tmp_path)


@pytest.fixture
def strict_api(tmp_path: Path) -> Iterator[Api]:
    """The API with private metrics, a small body limit and CORS for one origin."""
    # A data dir of its own: a test may use it beside `api`, whose keys have the same names.
    data_dir = tmp_path / "strict"
    settings = Settings(
        data_dir=data_dir,
        api=ApiSettings(
            metrics_public=False, max_body_bytes=2048, cors_origins=["https://ops.city.example"]
        ),
    )
    yield from make_api(data_dir, settings)
