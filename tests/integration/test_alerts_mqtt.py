"""Alert events and retained source state on the contract topics of a real Mosquitto."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from hub.alerts.manager import AlertManager
from hub.clock import SystemClock
from hub.messages import AlertEvent, Explanation, RuleEvent, RuleState, Severity
from hub.ports import UNRESTRICTED, AlertFilter
from hub.responders import build_alert_manager
from hub.settings import AlertsSettings, MqttSettings, Settings
from hub.sqlite import connect
from tests.conftest import Names
from tests.services import Mosquitto

pytestmark = pytest.mark.integration

ROUTES = "receivers: [{name: mqtt, mqtt: {}}]\nroute: {receivers: [mqtt], group_wait: 0s}\n"


def _event(state: RuleState, source: str = "wm-1", received_ms: int = 0) -> RuleEvent:
    return RuleEvent(
        rule_id="pressure-low",
        rule_version="v1",
        state=state,
        severity=Severity.CRITICAL,
        district="d07",
        asset_type="water_main",
        source=source,
        ts_ms=0,
        explanation=Explanation(summary=f"pressure {state.value}"),
        reading_received_ms=received_ms,
    )


async def _manager(
    tmp_path: Path, broker: Mosquitto, prefix: str, events: list[AlertEvent]
) -> tuple[AlertManager, sqlite3.Connection]:
    routes = tmp_path / "routes.yaml"
    routes.write_text(ROUTES)
    settings = Settings(
        data_dir=tmp_path,
        mqtt=MqttSettings(topic_prefix=prefix, client_id=f"{prefix}-hub"),
        alerts=AlertsSettings(routes_path=str(routes)),
    )
    conn = connect(tmp_path / "hub.db")
    manager = build_alert_manager(
        settings,
        conn,
        clock=SystemClock(),
        on_event=events.append,
        locate=lambda _: None,
        mqtt_url=broker.url,
    )
    return manager, conn


async def _until(condition: Any, limit_s: float = 10.0) -> None:
    """Poll a condition (DB or metric state) until a deadline."""
    async with asyncio.timeout(limit_s):
        while not condition():  # noqa: ASYNC110  (no event to wait on: DB / metric state)
            await asyncio.sleep(0.02)


async def _collect(
    client: aiomqtt.Client, want: int, limit_s: float = 10.0
) -> list[tuple[str, dict[str, Any], bool]]:
    got: list[tuple[str, dict[str, Any], bool]] = []
    async with asyncio.timeout(limit_s):
        async for message in client.messages:
            got.append((str(message.topic), json.loads(bytes(message.payload)), message.retain))  # type: ignore[arg-type]
            if len(got) >= want:
                break
    return got


@pytest.fixture
async def running(
    tmp_path: Path, mosquitto: Mosquitto, names: Names
) -> AsyncIterator[tuple[AlertManager, str, list[AlertEvent]]]:
    """A manager with its outbox worker running against the session broker."""
    events: list[AlertEvent] = []
    prefix = names.topic_prefix()
    manager, conn = await _manager(tmp_path, mosquitto, prefix, events)
    task = asyncio.create_task(manager.run())
    yield manager, prefix, events
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await manager.close()
    conn.close()


async def test_alert_events_and_retained_state_on_contract_topics(
    running: tuple[AlertManager, str, list[AlertEvent]], mosquitto: Mosquitto
) -> None:
    """Firing/resolved events arrive on {prefix}/alerts/{district}/{source}; state is retained."""
    manager, prefix, events = running
    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as sub:
        await sub.subscribe(f"{prefix}/alerts/#", qos=1)
        await manager.handle([_event(RuleState.FIRING)])
        got = await _collect(sub, 2)
    topics = {t: (p, r) for t, p, r in got}
    event, _ = topics[f"{prefix}/alerts/d07/wm-1"]
    assert event["event"] == "firing"
    assert event["status"] == "firing"
    assert event["severity"] == "critical"
    alert_id = event["alert_id"]
    assert manager.get_alert(alert_id) is not None
    state, _ = topics[f"{prefix}/alerts/d07/wm-1/state"]
    assert state["state"] == "alert"
    assert [a["alert_id"] for a in state["alerts"]] == [alert_id]

    # a display board that connects later gets the current state at once (retained)
    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as late:
        await late.subscribe(f"{prefix}/alerts/d07/wm-1/state", qos=1)
        ((_, retained, flag),) = await _collect(late, 1)
    assert flag is True
    assert retained["state"] == "alert"

    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as sub:
        await sub.subscribe(f"{prefix}/alerts/+/+", qos=1)
        await manager.handle([_event(RuleState.RESOLVED)])
        ((topic, resolved, _),) = await _collect(sub, 1)
    assert topic == f"{prefix}/alerts/d07/wm-1"
    assert resolved["event"] == "resolved"
    assert resolved["alert_id"] == alert_id
    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as late:
        await late.subscribe(f"{prefix}/alerts/d07/wm-1/state", qos=1)
        ((_, cleared, _),) = await _collect(late, 1)
    assert cleared["state"] == "clear"
    assert [e.status.value for e in events] == ["firing", "resolved"]


async def test_queued_while_broker_down_delivered_once_after(
    tmp_path: Path, own_mosquitto: Mosquitto, names: Names
) -> None:
    """With the broker down the event waits in the outbox; it is published once it is back."""
    events: list[AlertEvent] = []
    prefix = names.topic_prefix()
    manager, conn = await _manager(tmp_path, own_mosquitto, prefix, events)
    own_mosquitto.stop()
    task = asyncio.create_task(manager.run())
    try:
        await manager.handle([_event(RuleState.FIRING)])
        await _until(lambda: conn.execute("SELECT 1 FROM outbox WHERE attempt > 0").fetchone())
        own_mosquitto.start()
        async with aiomqtt.Client("127.0.0.1", own_mosquitto.port) as sub:
            await sub.subscribe(f"{prefix}/alerts/+/+", qos=1)
            await manager.tick()
            got = await _collect(sub, 1, limit_s=15)
            assert got[0][1]["event"] == "firing"
            # nothing else follows: the outbox is empty and the log has it once
            await _until(lambda: not manager.pending_notifications())
            with pytest.raises(TimeoutError):
                await _collect(sub, 1, limit_s=1.0)
        (sent,) = conn.execute("SELECT COUNT(*) FROM notify_log WHERE outcome = 'sent'").fetchone()
        assert sent == 1
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await manager.close()
        conn.close()


async def test_latency_is_measured_from_reading_arrival(
    running: tuple[AlertManager, str, list[AlertEvent]], mosquitto: Mosquitto
) -> None:
    """The alert latency histogram counts the firing publish of an event with a receive time."""
    from hub import metrics

    manager, prefix, _ = running
    before = metrics.ALERT_LATENCY_SECONDS._sum.get()  # type: ignore[attr-defined]
    count_before = _histogram_count()
    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as sub:
        await sub.subscribe(f"{prefix}/alerts/+/+", qos=1)
        received = SystemClock().now_ms() - 20
        await manager.handle([_event(RuleState.FIRING, source="wm-9", received_ms=received)])
        await _collect(sub, 1)
    await _until(lambda: _histogram_count() > count_before)
    assert metrics.ALERT_LATENCY_SECONDS._sum.get() - before >= 0.02  # type: ignore[attr-defined]
    assert manager.list_alerts(AlertFilter(state="firing"), UNRESTRICTED)


def _histogram_count() -> float:
    from hub import metrics

    for metric in metrics.ALERT_LATENCY_SECONDS.collect():
        for sample in metric.samples:
            if sample.name.endswith("_count"):
                return float(sample.value)
    return 0.0
