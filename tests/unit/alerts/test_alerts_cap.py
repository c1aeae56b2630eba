"""CAP 1.2 output of alerts validates against the official OASIS schema."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest
import xmlschema

from hub.alerts.cap import CAP_NS, cap_time
from hub.messages import RuleEvent, RuleState, Severity
from hub.ports import UNRESTRICTED, AlertFilter, NotFound

XSD = Path(__file__).resolve().parents[2] / "data" / "CAP-v1.2.xsd"
NS = {"cap": CAP_NS}


@pytest.fixture(scope="module")
def schema() -> xmlschema.XMLSchema:
    """The OASIS CAP 1.2 schema (copied into tests/data)."""
    return xmlschema.XMLSchema(str(XSD))


def _field(xml: str, path: str) -> list[str]:
    root = ET.fromstring(xml)
    return [el.text or "" for el in root.findall(path, NS)]


async def test_firing_update_cancel_validate_and_reference_earlier(
    harness, ev: Callable[..., RuleEvent], schema: xmlschema.XMLSchema
) -> None:
    """Alert, Update and Cancel are schema-valid; Update and Cancel reference earlier messages."""
    harness.locations["wm-1"] = (48.8566, 2.3522)
    m = harness.manager
    await m.handle([ev(severity=Severity.EMERGENCY)])
    alert = m.list_alerts(AlertFilter(), UNRESTRICTED)[0]
    first = m.cap_xml(alert.id)
    schema.validate(first)
    assert _field(first, "cap:msgType") == ["Alert"]
    assert _field(first, "cap:info/cap:severity") == ["Extreme"]
    assert _field(first, "cap:info/cap:category") == ["Infra"]
    assert _field(first, "cap:info/cap:area/cap:circle") == ["48.856600,2.352200 0.5"]
    assert _field(first, "cap:info/cap:area/cap:areaDesc") == ["District d01"]
    assert _field(first, "cap:references") == []

    harness.clock.advance(30)
    await m.acknowledge(alert.id, "alice", "crew on site")
    update = m.cap_xml(alert.id)
    schema.validate(update)
    assert _field(update, "cap:msgType") == ["Update"]
    first_id = _field(first, "cap:identifier")[0]
    assert _field(update, "cap:references") == [
        f"hub@city.example,{first_id},{_field(first, 'cap:sent')[0]}"
    ]

    harness.clock.advance(30)
    await m.handle([ev(RuleState.RESOLVED)])
    cancel = m.cap_xml(alert.id)
    schema.validate(cancel)
    assert _field(cancel, "cap:msgType") == ["Cancel"]
    assert _field(cancel, "cap:info/cap:urgency") == ["Past"]
    refs = _field(cancel, "cap:references")[0].split(" ")
    assert len(refs) == 2
    assert refs[0].split(",")[1] == first_id
    # identifiers are stable: rendering the first message again gives the same text
    assert m.cap_xml(alert.id, message_index=0) == first


async def test_area_alert_has_no_circle_and_unknown_alert_is_not_found(
    harness, ev: Callable[..., RuleEvent], schema: xmlschema.XMLSchema
) -> None:
    """An area alert's CAP area is the district only; an unknown id raises NotFound."""
    await harness.manager.handle([ev(source="_area", asset_type="flood_gauge")])
    alert = harness.manager.list_alerts(AlertFilter(), UNRESTRICTED)[0]
    xml = harness.manager.cap_xml(alert.id)
    schema.validate(xml)
    assert _field(xml, "cap:info/cap:area/cap:circle") == []
    assert _field(xml, "cap:info/cap:category") == ["Met"]
    with pytest.raises(NotFound):
        harness.manager.cap_xml("missing")


@pytest.mark.parametrize(
    ("severity", "cap"),
    [
        (Severity.INFO, "Minor"),
        (Severity.WARNING, "Moderate"),
        (Severity.CRITICAL, "Severe"),
        (Severity.EMERGENCY, "Extreme"),
    ],
)
async def test_severity_maps_to_cap_scale(
    harness, ev: Callable[..., RuleEvent], schema: xmlschema.XMLSchema, severity: Severity, cap: str
) -> None:
    """Each hub severity maps to its CAP severity and stays schema-valid."""
    await harness.manager.handle([ev(severity=severity, asset_type="air_quality")])
    alert = harness.manager.list_alerts(AlertFilter(), UNRESTRICTED)[0]
    xml = harness.manager.cap_xml(alert.id)
    schema.validate(xml)
    assert _field(xml, "cap:info/cap:severity") == [cap]


async def test_atom_feed_lists_current_cap_messages(harness, ev: Callable[..., RuleEvent]) -> None:
    """The Atom feed has one entry per current alert linking to its CAP document, in scope."""
    from hub.ports import Scope

    await harness.manager.handle([ev(source="wm-1"), ev(source="wm-2", district="d02")])
    feed = harness.manager.cap_feed(UNRESTRICTED, "http://hub.example/")
    root = ET.fromstring(feed)
    atom = {"a": "http://www.w3.org/2005/Atom"}
    links = [el.get("href") for el in root.findall("a:entry/a:link", atom)]
    assert len(links) == 2
    assert all(h and h.startswith("http://hub.example/api/v1/alerts/") for h in links)
    assert all(h and h.endswith("/cap") for h in links)
    scoped = harness.manager.cap_feed(Scope(districts=frozenset({"d02"})), "http://hub.example")
    assert len(ET.fromstring(scoped).findall("a:entry", atom)) == 1


def test_cap_time_has_explicit_offset() -> None:
    """CAP dateTimes carry +00:00, never Z, and no fractions."""
    assert cap_time(1_764_000_000_123) == "2025-11-24T16:00:00+00:00"
