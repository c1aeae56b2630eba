"""Alert events to MQTT (CONTRACT §1) for control rooms, sirens and display boards.

Per notification two QoS 1 messages:

- the event, not retained, on ``{prefix}/alerts/{district}/{source}``;
- the source's current state, **retained**, on ``{prefix}/alerts/{district}/{source}/state``
  (``{"state": "alert" | "clear", "severity": …, "alerts": [...]}``), so a siren or
  board that connects later learns at once whether its source is in alarm.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import ssl
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

import aiomqtt

from hub import metrics
from hub.clock import Clock
from hub.logging import get_logger
from hub.messages import Notification
from hub.ports import DeliveryError

log = get_logger(__name__)

# aiomqtt warns at more than 10 pending publishes; pipelining many is the point here.
_AIOMQTT_LOG = logging.getLogger("hub.notifiers.mqtt.aiomqtt")
_AIOMQTT_LOG.setLevel(logging.ERROR)

#: Seconds to wait for a connect or a PUBACK before calling the attempt failed.
MQTT_TIMEOUT_S = 10.0


def event_topic(prefix: str, district: str, source: str) -> str:
    """``{prefix}/alerts/{district}/{source}`` (CONTRACT §1)."""
    return f"{prefix}/alerts/{district}/{source}"


def state_topic(prefix: str, district: str, source: str) -> str:
    """The retained current-state topic of a source."""
    return f"{event_topic(prefix, district, source)}/state"


class MqttNotifier:
    """Publishes alert events and retained source state with aiomqtt."""

    # Notifications in flight at once (two publishes each): the outbox's sliding
    # window. aiomqtt scans its pending calls on every publish, so far more than
    # this costs CPU without adding speed.
    concurrency = 128
    digest = False  # sirens and boards act on each alert's event

    def __init__(
        self,
        name: str,
        url: str,
        prefix: str,
        *,
        clock: Clock,
        client_id: str = "",
        retain_state: bool = True,
        ca_file: str | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in {"mqtt", "mqtts"} or not parts.hostname:
            raise ValueError(f"MQTT notifier needs an mqtt:// or mqtts:// URL, got {url!r}")
        self.name = name
        self.prefix = prefix
        self._host = parts.hostname
        self._port = parts.port or (8883 if parts.scheme == "mqtts" else 1883)
        self._username = unquote(parts.username) if parts.username else None
        self._password = unquote(parts.password) if parts.password else None
        self._tls = ssl.create_default_context(cafile=ca_file) if parts.scheme == "mqtts" else None
        self._client_id = client_id
        self._retain_state = retain_state
        self._clock = clock
        self._client: aiomqtt.Client | None = None
        self._lock = asyncio.Lock()

    async def _connected(self) -> aiomqtt.Client:
        async with self._lock:
            if self._client is None:
                client = aiomqtt.Client(
                    self._host,
                    self._port,
                    username=self._username,
                    password=self._password,
                    identifier=self._client_id or None,
                    tls_context=self._tls,
                    timeout=MQTT_TIMEOUT_S,
                    max_inflight_messages=2 * self.concurrency,
                    logger=_AIOMQTT_LOG,
                    # Alerts are small and latency matters: without TCP_NODELAY, Nagle
                    # and the peer's delayed ACK hold a second small packet ~40 ms.
                    socket_options=((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),),
                )
                await client.__aenter__()
                self._client = client
            return self._client

    async def _drop(self, client: aiomqtt.Client) -> None:
        async with self._lock:
            if self._client is client:
                self._client = None
        # Already broken, most likely: that is why it is being dropped.
        with contextlib.suppress(aiomqtt.MqttError):
            await client.__aexit__(None, None, None)

    async def send(self, notification: Notification) -> None:
        """Publish the event (QoS 1) and the retained state; failures are retryable."""
        payload = notification.payload
        alert = payload.get("alert")
        if not isinstance(alert, Mapping):
            raise DeliveryError("notification has no alert", retryable=False)
        district, source = str(alert.get("district")), str(alert.get("source"))
        event = _event_payload(notification, alert)
        try:
            client = await self._connected()
        except aiomqtt.MqttError as exc:
            raise DeliveryError(f"cannot connect to the broker: {exc}", retryable=True) from exc
        publishes = [
            client.publish(
                event_topic(self.prefix, district, source),
                json.dumps(event, separators=(",", ":")),
                qos=1,
                timeout=MQTT_TIMEOUT_S,
            )
        ]
        state = payload.get("source_state")
        if self._retain_state and isinstance(state, Mapping):
            # Issued right behind the event on the same connection, so the broker
            # keeps their order; both PUBACKs are awaited together.
            publishes.append(
                client.publish(
                    state_topic(self.prefix, district, source),
                    json.dumps(state, separators=(",", ":")),
                    qos=1,
                    retain=True,
                    timeout=MQTT_TIMEOUT_S,
                )
            )
        results = await asyncio.gather(*publishes, return_exceptions=True)
        for result in results:
            if isinstance(result, aiomqtt.MqttError | TimeoutError | OSError):
                await self._drop(client)
                raise DeliveryError(f"publish failed: {result!r}", retryable=True) from result
            if isinstance(result, BaseException):
                raise result
        received = payload.get("reading_received_ms")
        if isinstance(received, int) and received > 0 and payload.get("kind") == "firing":
            metrics.ALERT_LATENCY_SECONDS.observe(max(0, self._clock.now_ms() - received) / 1000)

    async def close(self) -> None:
        """Disconnect."""
        client = self._client
        if client is not None:
            await self._drop(client)


def _event_payload(notification: Notification, alert: Mapping[str, Any]) -> dict[str, Any]:
    keys = (
        "id",
        "rule_id",
        "rule_version",
        "status",
        "severity",
        "district",
        "asset_type",
        "source",
        "summary",
        "labels",
        "started_ms",
        "updated_ms",
        "acknowledged_ms",
        "resolved_ms",
        "incident_id",
        "reopened_from",
    )
    event: dict[str, Any] = {k: alert.get(k) for k in keys}
    event["alert_id"] = event.pop("id")
    event["event"] = notification.payload.get("kind")
    event["ts"] = notification.payload.get("ts_ms", notification.created_ms)
    event["actor"] = notification.payload.get("actor", "hub")
    event["comment"] = notification.payload.get("comment", "")
    event["notification_id"] = notification.notification_id
    step = notification.payload.get("escalation_step")
    if step:
        event["escalation_step"] = step
    return event
