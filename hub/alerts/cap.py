"""OASIS CAP 1.2 rendering of alerts, and an Atom feed of current CAP messages.

Each CAP-relevant transition of an alert is one CAP message: the first firing is
``msgType=Alert``; later updates and the acknowledgement are ``Update``; the
resolution is ``Cancel``. Every message after the first ``references`` all
earlier messages of the same alert, as CAP requires. Identifiers are derived from
the alert id and the message's position, so they are stable across restarts.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from hub.ports import AlertRecord, Transition

CAP_NS = "urn:oasis:names:tc:emergency:cap:1.2"
ATOM_NS = "http://www.w3.org/2005/Atom"

#: CAP categories by asset type: what kind of hazard a sensor of that type reports.
CATEGORY_BY_ASSET = {
    "flood_gauge": "Met",
    "water_main": "Infra",
    "bridge": "Infra",
    "streetlight": "Infra",
    "manhole": "Safety",
    "air_quality": "Env",
    "traffic_counter": "Transport",
}
#: The hub's severities on CAP's scale.
CAP_SEVERITY = {
    "info": "Minor",
    "warning": "Moderate",
    "critical": "Severe",
    "emergency": "Extreme",
}
#: How soon responders should act, by severity.
CAP_URGENCY = {
    "info": "Future",
    "warning": "Expected",
    "critical": "Immediate",
    "emergency": "Immediate",
}
#: Transitions that produce a CAP message, and the message type of each after the first.
CAP_TRANSITIONS = {"firing": "Alert", "updated": "Update", "acknowledged": "Update"}
#: Radius of the circle around a device, km: the area a point sensor speaks for.
DEVICE_RADIUS_KM = 0.5

Locate = Callable[[str], tuple[float, float] | None]


def cap_time(ts_ms: int) -> str:
    """CAP's dateTime: seconds precision with an explicit offset (``Z`` is not allowed)."""
    return datetime.fromtimestamp(ts_ms // 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


@dataclass(frozen=True, slots=True)
class CapMessage:
    """One CAP message of an alert."""

    identifier: str
    sent_ms: int
    msg_type: str
    transition: Transition
    status: str


def cap_messages(alert: AlertRecord, timeline: Sequence[Transition]) -> list[CapMessage]:
    """The CAP messages of an alert, oldest first."""
    out: list[CapMessage] = []
    status = "firing"
    for t in timeline:
        if t.status == "resolved":
            msg_type = "Cancel"
        elif t.status in CAP_TRANSITIONS:
            msg_type = "Alert" if not out else "Update"
        else:
            continue
        if t.status != "updated":
            status = t.status  # an update keeps the status the alert had
        identifier = f"urn:city-hub:alert:{alert.id}:{len(out) + 1}"
        out.append(CapMessage(identifier, t.ts_ms, msg_type, t, status))
    return out


def render_cap(
    alert: AlertRecord,
    timeline: Sequence[Transition],
    *,
    sender: str,
    locate: Locate,
    message_index: int = -1,
) -> str:
    """The CAP 1.2 ``<alert>`` of one message (the latest by default) as XML text."""
    messages = cap_messages(alert, timeline)
    if not messages:
        # An alert always has its firing transition; this only guards odd data.
        messages = [
            CapMessage(
                f"urn:city-hub:alert:{alert.id}:1",
                alert.started_ms,
                "Alert",
                Transition(alert.started_ms, "firing", "hub"),
                "firing",
            )
        ]
    index = message_index if message_index >= 0 else len(messages) + message_index
    message = messages[index]
    earlier = messages[:index]
    return ET.tostring(
        _cap_element(alert, message, earlier, sender=sender, locate=locate),
        encoding="unicode",
        xml_declaration=True,
    )


def _sub(parent: ET.Element, tag: str, text: str) -> ET.Element:
    el = ET.SubElement(parent, tag)
    el.text = text
    return el


def _cap_element(
    alert: AlertRecord,
    message: CapMessage,
    earlier: Sequence[CapMessage],
    *,
    sender: str,
    locate: Locate,
) -> ET.Element:
    root = ET.Element("alert", {"xmlns": CAP_NS})
    _sub(root, "identifier", message.identifier)
    _sub(root, "sender", sender)
    _sub(root, "sent", cap_time(message.sent_ms))
    _sub(root, "status", "Actual")
    _sub(root, "msgType", message.msg_type)
    _sub(root, "source", f"rule {alert.rule_id} version {alert.rule_version}")
    _sub(root, "scope", "Public")
    note = message.transition.comment or ""
    if message.transition.status == "acknowledged":
        note = f"Acknowledged by {message.transition.actor}. {note}".strip()
    if alert.reopened_from:
        note = f"{note} Reopens alert {alert.reopened_from}.".strip()
    if note:
        _sub(root, "note", note)
    if earlier:
        _sub(
            root,
            "references",
            " ".join(f"{sender},{m.identifier},{cap_time(m.sent_ms)}" for m in earlier),
        )
    if alert.incident_id:
        _sub(root, "incidents", alert.incident_id)

    info = ET.SubElement(root, "info")
    _sub(info, "language", "en-US")
    _sub(info, "category", CATEGORY_BY_ASSET.get(alert.asset_type, "Other"))
    _sub(info, "event", alert.rule_id)
    if message.msg_type == "Cancel":
        _sub(info, "responseType", "AllClear")
        _sub(info, "urgency", "Past")
    else:
        _sub(info, "responseType", "Monitor")
        _sub(info, "urgency", CAP_URGENCY.get(alert.severity, "Unknown"))
    _sub(info, "severity", CAP_SEVERITY.get(alert.severity, "Unknown"))
    _sub(info, "certainty", "Observed")
    _sub(info, "onset", cap_time(alert.started_ms))
    _sub(info, "senderName", sender)
    where = "the area" if alert.source == "_area" else f"device {alert.source}"
    _sub(info, "headline", f"{alert.severity.upper()}: {alert.rule_id} at {where}"[:160])
    _sub(info, "description", alert.summary or alert.description or alert.rule_id)
    if alert.description and alert.summary:
        _sub(info, "instruction", alert.description)
    for name, value in (
        ("alert_id", alert.id),
        ("asset_type", alert.asset_type),
        ("source", alert.source),
        ("status", message.status),
    ):
        param = ET.SubElement(info, "parameter")
        _sub(param, "valueName", name)
        _sub(param, "value", value)

    area = ET.SubElement(info, "area")
    _sub(area, "areaDesc", f"District {alert.district}")
    if alert.source != "_area":
        point = locate(alert.source)
        if point is not None:
            lat, lon = point
            _sub(area, "circle", f"{lat:.6f},{lon:.6f} {DEVICE_RADIUS_KM}")
    geocode = ET.SubElement(area, "geocode")
    _sub(geocode, "valueName", "district")
    _sub(geocode, "value", alert.district)
    return root


def render_feed(
    entries: Sequence[tuple[AlertRecord, CapMessage]],
    *,
    base_url: str,
    now_ms: int,
    sender: str,
) -> str:
    """An Atom feed with one entry per alert, linking its current CAP message."""
    base = base_url.rstrip("/")

    def sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
        el = ET.SubElement(parent, tag, attrs)
        if text is not None:
            el.text = text
        return el

    feed = ET.Element("feed", {"xmlns": ATOM_NS})
    sub(feed, "id", f"{base}/api/v1/alerts/cap.atom")
    sub(feed, "title", "City hub: current alerts (CAP 1.2)")
    sub(feed, "updated", _atom_time(max((m.sent_ms for _, m in entries), default=now_ms)))
    author = sub(feed, "author")
    sub(author, "name", sender)
    sub(feed, "link", rel="self", href=f"{base}/api/v1/alerts/cap.atom")
    for alert, message in entries:
        entry = sub(feed, "entry")
        sub(entry, "id", message.identifier)
        sub(
            entry,
            "title",
            f"{alert.severity.upper()} {alert.rule_id} {alert.district}/{alert.source}",
        )
        sub(entry, "updated", _atom_time(message.sent_ms))
        sub(
            entry,
            "link",
            rel="alternate",
            type="application/cap+xml",
            href=f"{base}/api/v1/alerts/{alert.id}/cap",
        )
        sub(entry, "summary", f"{message.msg_type}: {alert.summary or alert.rule_id}")
        sub(entry, "category", term=CATEGORY_BY_ASSET.get(alert.asset_type, "Other"))
    return ET.tostring(feed, encoding="unicode", xml_declaration=True)


def _atom_time(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).isoformat(timespec="seconds")
