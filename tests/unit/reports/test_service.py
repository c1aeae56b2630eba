"""The report service: placing, linking to alerts and incidents, handling, privacy, hints."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.catalog import load_catalog
from hub.clock import FakeClock
from hub.ports import (
    UNRESTRICTED,
    AlertFilter,
    AlertRecord,
    Conflict,
    NotFound,
    ReportFilter,
    ReportInvalid,
    ReportSubmission,
    Scope,
)
from hub.reports import ReportService, SqliteReportStore, load_services
from hub.settings import ReportsSettings
from hub.sqlite import connect
from tests.unit.api.fakes import FakeRegistry

REPO = Path(__file__).resolve().parents[3]
NOW_MS = 1_764_000_000_000
#: A place in the city and points about 100 m and 1 km north of it.
HERE = (48.8566, 2.3522)
NEAR = (48.8575, 2.3522)
FAR = (48.8656, 2.3522)


class Alerts:
    """Alerts the service links against (the alert manager's list_alerts)."""

    def __init__(self) -> None:
        self.records: list[AlertRecord] = []

    def add(self, source: str, district: str, asset_type: str, **kw: object) -> AlertRecord:
        record = AlertRecord(
            id=f"al-{len(self.records) + 1}",
            rule_id=str(kw.pop("rule_id", "flood-critical")),
            rule_version="v1",
            status=str(kw.pop("status", "firing")),
            severity="critical",
            district=district,
            asset_type=asset_type,
            source=source,
            summary="water_level_m 3.4 > 3.0",
            description="",
            labels={},
            explanation={},
            started_ms=NOW_MS - 600_000,
            updated_ms=NOW_MS - 600_000,
            acknowledged_ms=None,
            resolved_ms=kw.pop("resolved_ms", None),  # type: ignore[arg-type]
            incident_id=str(kw.pop("incident_id", f"inc-{len(self.records) + 1}")),
        )
        self.records.append(record)
        return record

    def list_alerts(self, flt: AlertFilter, scope: Scope) -> list[AlertRecord]:
        active = ("firing", "acknowledged")
        return [
            a
            for a in self.records
            if (flt.state == "active" and a.status in active) or a.status == flt.state
        ]


class World:
    """A report service over a real state database, fake alerts and a fake registry."""

    def __init__(self, tmp_path: Path, settings: ReportsSettings | None = None) -> None:
        self.clock = FakeClock(NOW_MS)
        self.conn = connect(tmp_path / "hub.db")  # the state database of HUB_DATA_DIR
        self.alerts = Alerts()
        self.registry = FakeRegistry()
        self.registry.add(
            "fg-1",
            "d03",
            "flood_gauge",
            latitude=HERE[0],
            longitude=HERE[1],
            latest={"water_level_m": 1.1},
        )
        self.registry.add("mh-9", "d08", "manhole", latitude=FAR[0] + 0.05, longitude=FAR[1])
        self.service = ReportService(
            settings or ReportsSettings(),
            SqliteReportStore(self.conn),
            load_services(REPO / "rules" / "services.yaml", load_catalog().asset_types()),
            clock=self.clock,
            alerts=self.alerts,
            devices=self.registry,
        )

    def submit(
        self, code: str = "flooded_street", at: tuple[float, float] | None = HERE, **kw: object
    ):  # type: ignore[no-untyped-def]
        lat, lon = at if at is not None else (None, None)
        fields = {"service_code": code, "lat": lat, "lon": lon, **kw}
        return asyncio.run(self.service.submit(ReportSubmission(**fields)))  # type: ignore[arg-type]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    w.conn.close()


def test_report_is_placed_in_the_district_of_the_nearest_device(world: World) -> None:
    """Near fg-1 the report is in d03; with no device within 2 km, the default district."""
    assert world.submit(at=NEAR).district == "d03"
    assert world.submit(at=(10.0, 10.0)).district == "unassigned"
    assert world.submit(at=None, address_string="8th Ave and Judah St").district == "unassigned"


def test_report_near_an_active_flood_alert_is_linked_to_it_and_its_incident(world: World) -> None:
    """A flooded street 100 m from an alerting gauge links to that alert and its incident."""
    alert = world.alerts.add("fg-1", "d03", "flood_gauge", incident_id="inc-flood")
    report = world.submit(at=NEAR)
    assert [(link.alert_id, link.incident_id) for link in report.links] == [(alert.id, "inc-flood")]
    distance = report.links[0].distance_m
    assert distance is not None
    assert 90 < distance < 110
    by_incident = world.service.list_reports(ReportFilter(incident_id="inc-flood"), UNRESTRICTED)
    assert [r.id for r in by_incident] == [report.id]
    assert [r.id for r in world.service.for_alert(alert, UNRESTRICTED)] == [report.id]


def test_far_other_type_or_long_resolved_alerts_are_not_linked(world: World) -> None:
    """1 km away, another asset type, or resolved long ago: no link."""
    world.alerts.add("fg-1", "d03", "flood_gauge")
    world.alerts.add("fg-1", "d03", "manhole")
    world.alerts.add(
        "fg-1", "d03", "flood_gauge", status="resolved", resolved_ms=NOW_MS - 2 * 3_600_000
    )
    assert world.submit(at=FAR).links == ()
    assert len(world.submit(at=NEAR).links) == 1


def test_area_alert_of_the_district_and_recently_resolved_alerts_are_linked(world: World) -> None:
    """An area alert of the report's district links; so does one resolved minutes ago."""
    area = world.alerts.add("_area", "d03", "flood_gauge", rule_id="flood-area")
    resolved = world.alerts.add(
        "fg-1", "d03", "flood_gauge", status="resolved", resolved_ms=NOW_MS - 60_000
    )
    links = {link.alert_id: link.reason for link in world.submit(at=NEAR).links}
    assert set(links) == {area.id, resolved.id}
    assert "area alert" in links[area.id]


def test_attributes_are_checked_against_the_service_definition(world: World) -> None:
    """Required attributes, list keys, unknown codes: each refused by name."""
    with pytest.raises(ReportInvalid, match=r"attribute\[strength\]: required"):
        world.submit("gas_smell")
    with pytest.raises(ReportInvalid, match="'smelly' is not one of"):
        world.submit("gas_smell", attributes={"strength": ("smelly",)})
    with pytest.raises(ReportInvalid, match=r"attribute\[colour\]: not an attribute"):
        world.submit("gas_smell", attributes={"strength": ("faint",), "colour": ("red",)})
    with pytest.raises(ReportInvalid, match="ISO 8601"):
        world.submit("air_pollution", attributes={"observed_at": ("yesterday",)})
    with pytest.raises(NotFound):
        world.submit("pothole")
    with pytest.raises(ReportInvalid, match="a location is needed"):
        world.submit(at=None)
    ok = world.submit("gas_smell", attributes={"strength": ("strong",)})
    assert ok.attributes == {"strength": ("strong",)}


def test_status_with_a_public_note_and_merge_of_duplicates(world: World) -> None:
    """Operators move a report along with a note; a duplicate closes into the first one,
    which takes its links; a merged report cannot be handled any more."""
    alert = world.alerts.add("fg-1", "d03", "flood_gauge")
    first = world.submit(at=FAR)
    dup = world.submit(at=NEAR)
    done = asyncio.run(world.service.set_status(first.id, "in_progress", "Crew on the way", "ops"))
    assert (done.status, done.public_status, done.status_notes) == (
        "in_progress",
        "open",
        "Crew on the way",
    )
    merged = asyncio.run(world.service.merge(dup.id, first.id, "", "ops"))
    assert (merged.status, merged.merged_into) == ("closed", first.id)
    assert merged.status_notes == f"Duplicate of request {first.id}."
    assert [link.alert_id for link in world.service.get_report(first.id).links] == [alert.id]  # type: ignore[union-attr]
    with pytest.raises(Conflict):
        asyncio.run(world.service.set_status(dup.id, "open", "", "ops"))
    with pytest.raises(Conflict):
        asyncio.run(world.service.merge(first.id, first.id, "", "ops"))
    history = world.service.history(first.id)
    assert [(n.status, n.note, n.actor) for n in history] == [
        ("open", "", "citizen"),
        ("in_progress", "Crew on the way", "ops"),
    ]


def test_contact_data_is_erasable_and_expires_after_the_retention(world: World) -> None:
    """Erase by e-mail (any case) deletes it; retention deletes what is left in time."""
    one = world.submit(email="Ada@Example.org", first_name="Ada", phone="+33 1 23 45 67 89")
    two = world.submit(email="bob@example.org", last_name="Bobson")
    assert world.service.contact(one.id) is not None
    assert world.service.erase("ada@example.ORG") == 1
    assert world.service.contact(one.id) is None
    assert world.service.get_report(one.id).has_contact is False  # type: ignore[union-attr]
    assert world.service.contact(two.id) is not None
    world.clock.advance(89 * 86_400)
    assert world.service.tick() == 0
    world.clock.advance(2 * 86_400)
    assert world.service.tick() == 1
    assert world.service.contact(two.id) is None
    assert world.service.get_report(two.id) is not None  # the report itself stays


def test_reports_near_a_device_that_reads_normal_give_a_hint(world: World) -> None:
    """Three flooded streets near fg-1, which has no open alert: a device hint; once fg-1
    alerts, the hint is gone (the sensor sees it too)."""
    ids = [world.submit(at=NEAR).id for _ in range(3)]
    hints = world.service.hints(UNRESTRICTED)
    assert [(h.kind, h.device_id, h.reports) for h in hints] == [("device", "fg-1", tuple(ids))]
    assert "reads normal" in hints[0].summary
    assert world.service.hints(Scope(districts=frozenset({"d07"}))) == []
    assert world.service.hints(UNRESTRICTED, "fg-1") == hints
    world.alerts.add("fg-1", "d03", "flood_gauge")
    world.service.alerts_changed()
    world.clock.advance(10)
    assert world.service.hints(UNRESTRICTED) == []


def test_reports_where_no_sensor_is_near_give_a_district_hint(tmp_path: Path) -> None:
    """Reports of gas far from any manhole, in a district with no manhole alert: a district hint."""
    w = World(tmp_path)
    for _ in range(3):
        w.submit("gas_smell", at=FAR, attributes={"strength": ("faint",)})
    hints = w.service.hints(UNRESTRICTED)
    assert [(h.kind, h.district, h.asset_type) for h in hints] == [("district", "d03", "manhole")]
    w.conn.close()


def test_hub_reports_erase_deletes_the_contact_and_audits_without_the_address(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`hub reports erase --email` erases that reporter's contact data (any case) and
    writes an audit entry with the count, never the address."""
    from hub.api.audit import entries
    from hub.cli import main
    from hub.sqlite import STATE_DB

    data_dir = tmp_path / "var"
    w = World(data_dir)
    kept = w.submit(email="Ada@Example.org", first_name="Ada")
    other = w.submit(email="bob@example.org")
    w.conn.close()
    monkeypatch.setenv("HUB_DATA_DIR", str(data_dir))
    assert main(["reports", "erase", "--email", "ada@example.org"]) == 0
    assert "erased the contact data of 1 report(s)" in capsys.readouterr().out
    assert main(["reports", "erase", "--email", "nobody"]) == 2
    conn = connect(data_dir / STATE_DB)
    store = SqliteReportStore(conn)
    assert store.contact(kept.id) is None
    assert store.contact(other.id) is not None
    [entry] = entries(conn, limit=5)
    assert (entry.method, entry.path, entry.rows) == ("ERASE", "hub reports erase", 1)
    dump = " ".join(map(str, conn.execute("SELECT * FROM audit_log").fetchone()))
    assert "ada" not in dump.lower()
    conn.close()
