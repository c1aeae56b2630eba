"""Webhook and Apprise receivers against a real HTTP server on loopback."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from hub.alerts.manager import AlertManager
from hub.clock import SystemClock
from hub.messages import AlertEvent, Explanation, RuleEvent, RuleState, Severity
from hub.notifiers.webhook import SIGNATURE_HEADER, verify
from hub.ports import UNRESTRICTED, AlertFilter
from hub.responders import build_alert_manager
from hub.settings import AlertsSettings, MqttSettings, Settings
from hub.sqlite import connect
from tests.services import free_port

pytestmark = pytest.mark.integration

SECRET = "a-real-shared-secret-for-tests"


class Receiver:
    """A small threaded HTTP server that records every request and answers ``status``."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.status = 204
        self._server: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with outer._lock:
                    outer.requests.append((self.path, dict(self.headers.items()), body))
                self.send_response(outer.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def bodies(self) -> list[dict[str, Any]]:
        with self._lock:
            return [json.loads(b) for _, _, b in self.requests]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """An HTTP receiver on a free loopback port (not started yet)."""
    r = Receiver(free_port())
    yield r
    r.stop()


def _event(state: RuleState, source: str = "fg-1") -> RuleEvent:
    return RuleEvent(
        rule_id="flood-critical",
        rule_version="v3",
        state=state,
        severity=Severity.CRITICAL,
        district="d02",
        asset_type="flood_gauge",
        source=source,
        ts_ms=0,
        explanation=Explanation(summary="water level 3.4 m > 3.0 m"),
        labels={"team": "flood-response"},
    )


@pytest.fixture
async def manager_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Any]:
    """Build a manager with a given routes file; its outbox worker runs in the background."""
    made: list[tuple[AlertManager, sqlite3.Connection, asyncio.Task[None]]] = []

    async def make(routes_yaml: str) -> AlertManager:
        routes = tmp_path / "routes.yaml"
        routes.write_text(routes_yaml)
        settings = Settings(
            data_dir=tmp_path,
            mqtt=MqttSettings(topic_prefix="t-webhook"),
            alerts=AlertsSettings(routes_path=str(routes)),
        )
        conn = connect(tmp_path / "hub.db")
        events: list[AlertEvent] = []
        manager = build_alert_manager(
            settings,
            conn,
            clock=SystemClock(),
            on_event=events.append,
            locate=lambda _: None,
            mqtt_url="mqtt://127.0.0.1:1",
            environ={"FLOOD_HOOK_SECRET": SECRET},
        )
        made.append((manager, conn, asyncio.create_task(manager.run())))
        return manager

    yield make
    for manager, conn, task in made:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await manager.close()
        conn.close()


def _routes(url: str) -> str:
    return (
        "receivers:\n"
        "  - name: flood-team\n"
        "    webhook:\n"
        f"      url: {url}\n"
        "      secret_env: FLOOD_HOOK_SECRET\n"
        "      timeout: 2s\n"
        # group_interval 0s: each notification goes out as soon as it is queued
        # (the digest timing has its own tests).
        "route:\n  receivers: [flood-team]\n  group_wait: 0s\n  group_interval: 0s\n"
    )


async def _until(condition: Any, limit_s: float = 15.0) -> None:
    """Poll a condition (state owned by a server thread or the DB) until a deadline."""
    async with asyncio.timeout(limit_s):
        while not condition():  # noqa: ASYNC110  (no event to wait on: another thread's state)
            await asyncio.sleep(0.02)


async def test_webhook_body_is_signed(receiver: Receiver, manager_for: Any) -> None:
    """The receiver can verify X-Hub-Signature-256 over the exact body with the shared secret."""
    receiver.start()
    manager = await manager_for(_routes(receiver.url))
    await manager.handle([_event(RuleState.FIRING)])
    await _until(lambda: len(receiver.requests) == 1)
    path, headers, body = receiver.requests[0]
    assert path == "/hook"
    assert verify(SECRET.encode(), body, headers[SIGNATURE_HEADER])
    assert not verify(b"wrong secret", body, headers[SIGNATURE_HEADER])
    payload = json.loads(body)
    assert payload["kind"] == "firing"
    assert payload["alert"]["rule_id"] == "flood-critical"
    assert payload["alert"]["labels"] == {"team": "flood-response"}
    assert headers["Content-Type"] == "application/json"


async def test_receiver_down_then_up_gets_it_exactly_once(
    receiver: Receiver, manager_for: Any
) -> None:
    """While the receiver is down the notification waits; once up it arrives exactly once."""
    manager = await manager_for(_routes(receiver.url))
    await manager.handle([_event(RuleState.FIRING)])
    conn = manager._conn
    await _until(lambda: conn.execute("SELECT 1 FROM outbox WHERE attempt >= 1").fetchone())
    receiver.start()
    await _until(lambda: len(receiver.requests) >= 1)
    await _until(lambda: not manager.pending_notifications())
    await manager.tick()
    ids = [b["notification_id"] for b in receiver.bodies()]
    assert len(ids) == 1
    # nothing left that could still produce a duplicate: sent once in the log, outbox empty
    log_rows = conn.execute("SELECT outcome, attempts FROM notify_log").fetchall()
    assert [(r["outcome"], r["attempts"] >= 2) for r in log_rows] == [("sent", True)]
    assert conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 0


async def test_server_errors_retry_and_client_errors_drop(
    receiver: Receiver, manager_for: Any
) -> None:
    """503 is retried until it succeeds; a later 400 is dropped and recorded, not retried."""
    receiver.status = 503
    receiver.start()
    manager = await manager_for(_routes(receiver.url))
    await manager.handle([_event(RuleState.FIRING)])
    await _until(lambda: len(receiver.requests) >= 1)
    receiver.status = 204
    await _until(lambda: not manager.pending_notifications())
    assert len(receiver.requests) == 2
    assert len({b["notification_id"] for b in receiver.bodies()}) == 1

    receiver.status = 400
    await manager.handle([_event(RuleState.RESOLVED)])
    await _until(lambda: len(receiver.requests) == 3)
    await _until(lambda: not manager.pending_notifications())
    alert = manager.list_alerts(AlertFilter(), UNRESTRICTED)[0]
    failed = [t for t in manager.timeline(alert.id) if t.detail.get("outcome") == "failed"]
    assert len(failed) == 1
    assert "400" in failed[0].comment


async def test_apprise_json_url_reaches_the_receiver(receiver: Receiver, manager_for: Any) -> None:
    """An apprise json:// URL delivers a title and body through Apprise itself."""
    receiver.start()
    routes = (
        "receivers:\n  - name: chat\n    apprise:\n"
        f"      urls: ['json://127.0.0.1:{receiver.port}/apprise']\n"
        "route: {receivers: [chat], group_wait: 0s}\n"
    )
    manager = await manager_for(routes)
    await manager.handle([_event(RuleState.FIRING)])
    await _until(lambda: len(receiver.requests) == 1)
    body = receiver.bodies()[0]
    assert receiver.requests[0][0] == "/apprise"
    assert "flood-critical" in body["title"]
    assert "water level 3.4 m" in body["message"]
