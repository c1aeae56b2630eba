"""The live SSE stream: wire format, scope filtering, keepalive."""

from __future__ import annotations

import asyncio
import json

from hub.api.auth import Principal
from hub.api.keys import verify_key
from hub.api.routes.stream import event_source
from hub.messages import AlertEvent, AlertStatus, Severity
from hub.ports import DeviceStatusEvent
from tests.unit.api.conftest import NOW_MS, Api


def _alert(district: str) -> AlertEvent:
    return AlertEvent(
        alert_id=f"a-{district}",
        rule_id="flood-critical",
        status=AlertStatus.FIRING,
        severity=Severity.CRITICAL,
        district=district,
        asset_type="flood_gauge",
        source=f"fg-{district}",
        ts_ms=NOW_MS,
        summary="high water",
    )


def _events(body: str) -> list[tuple[str, dict[str, object]]]:
    out = []
    for block in body.split("\n\n"):
        lines = dict(
            line.split(": ", 1) for line in block.splitlines() if line and not line.startswith(":")
        )
        if "event" in lines:
            out.append((lines["event"], json.loads(lines["data"])))
    return out


def test_stream_sends_alerts_and_device_events_in_scope(api: Api) -> None:
    """A d07 key receives d07 alert and device events only, as SSE with JSON data."""
    api.events.preset = [
        _alert("d03"),
        _alert("d07"),
        DeviceStatusEvent("fg-d03-1", "d03", "flood_gauge", "offline", NOW_MS),
        DeviceStatusEvent("fg-d07-1", "d07", "flood_gauge", "offline", NOW_MS),
    ]
    response = api.client.get("/api/v1/stream", headers=api.auth("d07"))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = _events(response.text)
    assert [(kind, data["district"]) for kind, data in events] == [
        ("alert", "d07"),
        ("device", "d07"),
    ]
    assert events[0][1]["severity"] == "critical"
    assert events[0][1]["status"] == "firing"
    unscoped = _events(api.client.get("/api/v1/stream", headers=api.auth("viewer")).text)
    assert len(unscoped) == 4


def test_stream_needs_a_key(api: Api) -> None:
    """The stream is 401 without a key."""
    assert api.client.get("/api/v1/stream").status_code == 401


async def test_live_stream_delivers_published_events_and_keepalives(api: Api) -> None:
    """Events published after connecting arrive; silence produces keepalive comments."""
    key = verify_key(api.ctx.conn, api.keys["viewer"])
    assert key is not None
    source = event_source(api.ctx, Principal(key), keepalive_s=0.05)
    assert "connected" in await anext(source)
    assert api.events.subscribers == 1
    api.events.publish(_alert("d03"))
    assert (await asyncio.wait_for(anext(source), 5)).startswith("event: alert")
    assert await asyncio.wait_for(anext(source), 5) == ": keepalive\n\n"
    await source.aclose()
    assert api.events.subscribers == 0
