"""Alert events to MQTT (CONTRACT §1) for control rooms, sirens and display boards.

Per notification two QoS 1 messages:

- the event, not retained, on ``{prefix}/alerts/{district}/{source}``;
- the source's current state, **retained**, on ``{prefix}/alerts/{district}/{source}/state``
  (``{"state": "alert" | "clear", "severity": …, "alerts": [...]}``), so a siren or
  board that connects later learns at once whether its source is in alarm.

The client is paho-mqtt (MQTT 3.1.1, which every broker speaks, the embedded amqtt
fallback included) driven by the hub's event loop: its socket is watched with
``add_reader`` / ``add_writer``, and a PUBACK settles the future of its publish.
aiomqtt did the same job at ~300 µs of CPU per notification on this machine; this
does it at ~100 µs, which is what lets an alert storm's events keep up
(``bench/alerts.py``; figures in docs/alerts.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

import orjson
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from hub import metrics
from hub.aio import in_daemon_thread
from hub.clock import Clock
from hub.logging import get_logger
from hub.messages import Notification
from hub.ports import DeliveryError
from hub.redact import redact_url

log = get_logger(__name__)

#: Seconds to wait for a connect or a PUBACK before calling the attempt failed.
MQTT_TIMEOUT_S = 10.0
#: Keepalive announced to the broker; paho's housekeeping runs every second.
KEEPALIVE_S = 60
MISC_INTERVAL_S = 1.0


def event_topic(prefix: str, district: str, source: str) -> str:
    """``{prefix}/alerts/{district}/{source}`` (CONTRACT §1)."""
    return f"{prefix}/alerts/{district}/{source}"


def state_topic(prefix: str, district: str, source: str) -> str:
    """The retained current-state topic of a source."""
    return f"{event_topic(prefix, district, source)}/state"


_PUBACK_OK = ReasonCode(PacketTypes.PUBACK, "Success")
_NO_PROPERTIES = Properties(PacketTypes.PUBACK)  # type: ignore[no-untyped-call]


# A seam into paho's private internals (_handle_pubackcomp, _do_on_publish,
# _in_packet, _out_messages): why it is worth it is below. paho-mqtt is pinned to the
# minor version tested (pyproject.toml); tests/unit/test_dependencies.py checks it.
class _Client(paho.Client):
    """paho with a lean PUBACK path: a 3.1.1 PUBACK is just a packet id, and paho
    2.2 decodes each into a new ReasonCode and Properties (~15 % of a notification)."""

    def _handle_pubackcomp(self, cmd: Any) -> MQTTErrorCode:
        packet = self._in_packet["packet"]
        if cmd != "PUBACK" or len(packet) != 2:
            return super()._handle_pubackcomp(cmd)
        mid = (packet[0] << 8) | packet[1]
        if mid in self._out_messages:
            return self._do_on_publish(mid, _PUBACK_OK, _NO_PROPERTIES)
        return MQTTErrorCode.MQTT_ERR_SUCCESS


class _Session:
    """One connection: paho on the event loop, and the publishes awaiting a PUBACK."""

    def __init__(self, client: paho.Client, loop: asyncio.AbstractEventLoop) -> None:
        self.client = client
        self.loop = loop
        self.pending: dict[int, asyncio.Future[None]] = {}
        self.connack: asyncio.Future[ReasonCode] = loop.create_future()
        self.closed = False
        self._misc: asyncio.Task[None] | None = None
        client.on_connect = self._on_connect
        client.on_publish = self._on_publish
        client.on_disconnect = self._on_disconnect

    def attach(self) -> None:
        """Hand the connected socket to the loop (connect ran in a thread)."""
        sock = self.client.socket()
        if sock is None:
            raise ConnectionError("no socket after connect")
        client = self.client
        client.on_socket_register_write = self._want_write
        client.on_socket_unregister_write = self._wrote
        client.on_socket_close = self._socket_closed
        self.loop.add_reader(sock, client.loop_read)
        if client.want_write():
            client.loop_write()
        self._misc = self.loop.create_task(self._housekeeping(), name="hub.notifiers.mqtt.misc")

    def publish(self, topic: str, payload: bytes, *, retain: bool) -> asyncio.Future[None]:
        """Queue a QoS 1 publish; the future settles on its PUBACK (or the connection's end)."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise ConnectionError(f"publish refused: {paho.error_string(info.rc)}")
        future: asyncio.Future[None] = self.loop.create_future()
        self.pending[info.mid] = future
        return future

    def close(self) -> None:
        """Say goodbye to the broker (best effort) and release the socket."""
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(OSError, ValueError):
            self.client.disconnect()  # queues DISCONNECT; loop_write sends it and closes
            self.client.loop_write()
        self._socket_closed(self.client, None, self.client.socket())
        self._fail(ConnectionError("connection closed"))

    # -- paho callbacks (on the loop)
    def _on_connect(self, _c: paho.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
        if not self.connack.done():
            self.connack.set_result(reason)

    def _on_publish(self, _c: paho.Client, _u: Any, mid: int, _r: Any, _p: Any) -> None:
        future = self.pending.pop(mid, None)
        if future is not None and not future.done():
            future.set_result(None)

    def _on_disconnect(self, _c: paho.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self.closed = True
        self._fail(ConnectionError(f"connection lost: {reason}"))

    def _want_write(self, client: paho.Client, _u: Any, sock: Any) -> None:
        # paho has a packet to send: send it now rather than at the loop's next turn
        # (in a storm that turn comes after the next chunk of alerts is opened, tens
        # of ms later). Only what the socket does not take waits for the writer
        # callback, so the writer is rarely registered and unregistered.
        client.loop_write()
        if client.want_write() and client.socket() is not None:  # None: write failed, closed
            self.loop.add_writer(sock, client.loop_write)

    def _wrote(self, _c: paho.Client, _u: Any, sock: Any) -> None:
        with contextlib.suppress(ValueError, OSError):
            self.loop.remove_writer(sock)

    def _socket_closed(self, _c: paho.Client, _u: Any, sock: Any) -> None:
        self.closed = True
        if sock is not None:
            with contextlib.suppress(ValueError, OSError):
                self.loop.remove_reader(sock)
                self.loop.remove_writer(sock)
        if self._misc is not None:
            self._misc.cancel()
        self._fail(ConnectionError("connection closed"))

    def _fail(self, error: Exception) -> None:
        if not self.connack.done():
            self.connack.set_exception(error)
            self.connack.exception()  # retrieved here: the connect attempt sees .closed
        pending, self.pending = self.pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(error)

    async def _housekeeping(self) -> None:
        while not self.closed:
            await asyncio.sleep(MISC_INTERVAL_S)
            self.client.loop_misc()  # keepalive pings; notices a silent broker


class MqttNotifier:
    """Publishes alert events and retained source state over one MQTT connection."""

    # Notifications in flight at once (two publishes each): the outbox's sliding
    # window. The broker keeps their order on the one connection.
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
            raise ValueError(
                f"MQTT notifier needs an mqtt:// or mqtts:// URL, got {redact_url(url)!r}"
            )
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
        self._session: _Session | None = None
        self._lock = asyncio.Lock()

    async def _connected(self) -> _Session:
        session = self._session
        if session is not None and not session.closed:
            return session
        async with self._lock:
            session = self._session
            if session is not None and not session.closed:
                return session
            self._session = None
            loop = asyncio.get_running_loop()
            client = _Client(
                CallbackAPIVersion.VERSION2,
                client_id=self._client_id,
                protocol=MQTTProtocolVersion.MQTTv311,
                reconnect_on_failure=False,
            )
            # No paho limit (0): the outbox's window already bounds what is in flight,
            # and with a limit paho scans every unacknowledged message on each PUBACK
            # (~5 % of the hub's CPU in an alert storm, with 256 in flight).
            client.max_inflight_messages_set(0)
            if self._username is not None:
                client.username_pw_set(self._username, self._password)
            if self._tls is not None:
                client.tls_set_context(self._tls)
            session = _Session(client, loop)
            # DNS, TCP connect and the TLS handshake block: in a thread. CONNECT is
            # written there too; the CONNACK is read on the loop.
            await in_daemon_thread(
                loop,
                lambda: client.connect(self._host, self._port, KEEPALIVE_S),
                "hub.notifiers.mqtt.connect",
            )
            # Alerts are small and latency matters: without TCP_NODELAY, Nagle and
            # the peer's delayed ACK hold a second small packet ~40 ms.
            sock = client.socket()
            if isinstance(sock, socket.socket | ssl.SSLSocket):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            session.attach()
            try:
                async with asyncio.timeout(MQTT_TIMEOUT_S):
                    reason = await session.connack
            except BaseException:
                session.close()
                raise
            if reason.is_failure:
                session.close()
                raise ConnectionRefusedError(f"broker refused the connection: {reason}")
            self._session = session
            return session

    async def send(self, notification: Notification) -> None:
        """Publish the event (QoS 1) and the retained state; failures are retryable."""
        payload = notification.payload
        alert = payload.get("alert")
        if not isinstance(alert, Mapping):
            raise DeliveryError("notification has no alert", retryable=False)
        district, source = str(alert.get("district")), str(alert.get("source"))
        event = orjson.dumps(_event_payload(notification, alert), default=str)
        state = payload.get("source_state")
        try:
            session = await self._connected()
        except (OSError, TimeoutError) as exc:
            raise DeliveryError(f"cannot connect to the broker: {exc!r}", retryable=True) from exc
        try:
            acks = [
                session.publish(event_topic(self.prefix, district, source), event, retain=False)
            ]
            if self._retain_state and isinstance(state, Mapping):
                # Right behind the event on the same connection, so the broker keeps
                # their order; both PUBACKs are awaited together.
                body = orjson.dumps(state, default=str)
                acks.append(
                    session.publish(state_topic(self.prefix, district, source), body, retain=True)
                )
            async with asyncio.timeout(MQTT_TIMEOUT_S):
                for ack in acks:
                    await ack
        except (ConnectionError, TimeoutError) as exc:
            session.close()  # a lost PUBACK means a connection we cannot trust
            raise DeliveryError(f"publish failed: {exc!r}", retryable=True) from exc
        received = payload.get("reading_received_ms")
        if isinstance(received, int) and received > 0 and payload.get("kind") == "firing":
            metrics.ALERT_LATENCY_SECONDS.observe(max(0, self._clock.now_ms() - received) / 1000)

    async def close(self) -> None:
        """Disconnect."""
        async with self._lock:
            if self._session is not None:
                self._session.close()
                self._session = None


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
    received = notification.payload.get("reading_received_ms")
    if received:
        # When the triggering reading reached the hub: with `ts`, how long detection
        # took (and, against the receiver's clock, delivery too).
        event["reading_received_ms"] = received
    step = notification.payload.get("escalation_step")
    if step:
        event["escalation_step"] = step
    return event
