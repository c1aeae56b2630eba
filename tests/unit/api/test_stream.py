"""The live SSE stream: wire format, scope filtering, keepalive, revocation."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from hub.api.auth import Principal
from hub.api.keys import revoke_key, verify_key
from hub.api.routes.stream import event_source
from hub.messages import AlertEvent, AlertStatus, Severity
from hub.ports import DeviceStatusEvent
from hub.sqlite import STATE_DB, connect
from tests.services import free_port, wait_for
from tests.unit.api.conftest import NOW_MS, Api, make_api


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


@pytest.fixture
def served_api(tmp_path: Path) -> Iterator[tuple[Api, str]]:
    """The API served by a real uvicorn on a free loopback port, for real streaming clients."""
    for api in make_api(tmp_path):
        config = uvicorn.Config(
            api.client.app,
            host="127.0.0.1",
            port=free_port(),
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
        thread.start()
        wait_for(lambda s=server: s.started, what="uvicorn to start")
        yield api, f"http://127.0.0.1:{config.port}"
        server.should_exit = True
        thread.join(10)


class StreamReader:
    """Reads GET /api/v1/stream in a thread, as a dashboard or script would."""

    def __init__(self, url: str, key: str) -> None:
        self.lines: list[str] = []
        self.connected = threading.Event()
        self.ended = threading.Event()
        self.status = 0
        self._thread = threading.Thread(target=self._run, args=(url, key), daemon=True)
        self._thread.start()

    def _run(self, url: str, key: str) -> None:
        headers = {"Authorization": f"Bearer {key}"}
        try:
            with httpx.stream("GET", f"{url}/api/v1/stream", headers=headers, timeout=30) as r:
                self.status = r.status_code
                for line in r.iter_lines():
                    self.lines.append(line)
                    if line == ": connected":
                        self.connected.set()
        finally:
            self.ended.set()


def test_revoking_a_key_ends_its_open_streams_within_a_second(served_api: tuple[Api, str]) -> None:
    """`hub keys revoke` (another connection to the state database) ends every open stream of
    that key within a second, with a last ': key revoked' line; other keys' streams stay
    open, and reconnecting with the revoked key is a 401."""
    api, url = served_api
    revoked = [StreamReader(url, api.keys["viewer"]) for _ in range(2)]
    other = StreamReader(url, api.keys["operator"])
    for reader in (*revoked, other):
        assert reader.connected.wait(10)
    cli = connect(api.ctx.settings.data_dir / STATE_DB)  # as `hub keys revoke` does
    try:
        revoke_key(cli, "viewer-key")
        # The promise is a second; the deadline allows half as much again for a loaded machine.
        wait_for(lambda: all(r.ended.is_set() for r in revoked), timeout=1.5, what="streams end")
        assert all([line for line in r.lines if line][-1] == ": key revoked" for r in revoked)
        assert not other.ended.is_set()
        again = httpx.get(f"{url}/api/v1/stream", headers=api.auth("viewer"), timeout=10)
        assert again.status_code == 401
        revoke_key(cli, "operator-key")
        assert other.ended.wait(5)
    finally:
        cli.close()
