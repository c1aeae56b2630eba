"""The hub's MQTT session for ingest: the only module that speaks MQTT to receive.

paho-mqtt 2.x, MQTT 5 (or 3.1.1 for brokers without it, such as the in-process
amqtt fallback: ``MqttSettings.protocol``), driven by the asyncio loop (``add_reader`` /
``add_writer`` on its socket; ``loop_read`` / ``loop_write`` / ``loop_misc``):

- a fixed client id, ``clean_start=False`` and a long session expiry (3.1.1:
  ``clean_session=False``), so the broker keeps the subscriptions and queues
  messages while the hub is away;
- QoS 1 subscriptions to the telemetry and status topics, ``manual_ack=True``:
  a message is acknowledged only when the hub calls :meth:`MqttSource.ack`
  (after the journal made it durable), in arrival order;
- MQTT 5 receive-maximum: the broker never has more than that many
  unacknowledged messages in flight to us, so if the hub stops acking the
  broker stops sending (back-pressure reaches the broker, not the heap);
- reconnects with capped, jittered exponential backoff (hub.retry) and re-subscribes.

The socket is wrapped so that one wake-up reads a large chunk and hands paho
many packets from it (paho itself reads a packet in three small ``recv`` calls),
and all PUBACKs of an ack call leave in one ``send``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from collections import deque
from collections.abc import Sequence
from types import TracebackType
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.exception import MalformedPacket
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from hub import metrics
from hub.aio import in_daemon_thread
from hub.clock import Clock
from hub.ingest.topics import subscriptions as default_subscriptions
from hub.logging import get_logger
from hub.messages import RawMessage
from hub.retry import Backoff
from hub.settings import MqttSettings

log = get_logger(__name__)

#: How long the broker keeps our session (subscriptions + queued messages) while
#: the hub is away: a week covers a long outage or a slow upgrade; beyond that
#: the broker may forget a hub that was decommissioned.
SESSION_EXPIRY_S = 7 * 86_400
#: Bytes read from the socket per recv: many 100-byte PUBLISH packets at once.
READ_CHUNK = 256 * 1024
#: Packets handled per wake-up before yielding to the loop (fairness).
MAX_PACKETS_PER_WAKEUP = 20_000
#: Time allowed for CONNACK and SUBACK.
HANDSHAKE_TIMEOUT_S = 10.0
#: How often paho's housekeeping (keepalive pings, ping timeouts) runs.
MISC_INTERVAL_S = 1.0


#: PUBACK packets by packet id, built once (65,535 x 4 bytes).
_PUBACK = [b"\x40\x02" + mid.to_bytes(2, "big") for mid in range(65_536)]


def shared_subscriptions(filters: Sequence[str], group: str) -> list[str]:
    """``filters`` as members of the shared subscription ``group`` (MQTT 5 ``$share``;
    Mosquitto takes it on 3.1.1 too): the broker hands each message to one member
    session of the group. Cluster mode's ingest slots use it (hub.cluster.slots)."""
    return [f"$share/{group}/{f}" for f in filters]


class BrokerRefused(Exception):
    """The broker refused the connection or a subscription; ``reason`` says why."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class _BufferedSocket:
    """paho's socket, with reads served from large chunks and writes coalesced.

    paho calls ``recv(1)``, ``recv(1)``, ``recv(n)`` per packet; here that costs a
    slice of a buffer instead of three system calls. ``send`` only buffers;
    :meth:`flush` writes (the source calls it after every batch of work).
    """

    def __init__(self, sock: Any, on_close: Any) -> None:
        self._sock = sock
        self._on_close = on_close
        self._rbuf = b""
        self._rpos = 0
        self._wbuf = bytearray()
        self.closed = False

    # -- the SocketLike protocol paho uses
    def recv(self, bufsize: int) -> bytes:
        pos = self._rpos
        buf = self._rbuf
        if pos >= len(buf):
            buf = self._sock.recv(max(bufsize, READ_CHUNK))
            if not buf:
                return b""
            self._rbuf = buf
            pos = 0
        chunk = buf[pos : pos + bufsize]
        self._rpos = pos + len(chunk)
        return chunk

    def send(self, buffer: bytes | bytearray) -> int:
        self._wbuf += buffer
        return len(buffer)

    def fileno(self) -> int:
        return int(self._sock.fileno())

    def setblocking(self, flag: bool) -> None:
        self._sock.setblocking(flag)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self._on_close(self)
            with contextlib.suppress(OSError, ValueError):
                if self._wbuf:  # best effort: what paho wrote last (e.g. a DISCONNECT)
                    self._sock.send(self._wbuf)
        finally:
            self._sock.close()

    # -- ours
    @property
    def pending(self) -> int:
        """Bytes read from the socket and not yet handed to paho."""
        return len(self._rbuf) - self._rpos

    @property
    def wants_write(self) -> bool:
        """True while buffered output waits for the socket."""
        return bool(self._wbuf)

    def flush(self) -> None:
        """Write what the socket takes now; keep the rest for the next writable event."""
        while self._wbuf and not self.closed:
            try:
                sent = self._sock.send(self._wbuf)
            except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                return
            except OSError:
                # The connection is broken; the reader sees it and paho reports the loss.
                self._wbuf.clear()
                return
            del self._wbuf[:sent]


# A seam into paho's private internals (_create_socket, _handle_publish, _in_packet,
# _protocol): why it is worth it is below. paho-mqtt is pinned to the minor version
# tested (pyproject.toml) and tests/unit/test_dependencies.py checks the seam's shape.
class _Client(paho.Client):
    """paho's client with the buffered socket above and a lean PUBLISH path.

    paho builds an MQTT 5 ``Properties`` object, an ``MQTTMessage`` and runs its
    topic matcher for every PUBLISH: about 50 µs a message here, most of the
    receive budget. QoS 0/1 PUBLISH packets are parsed here instead (topic,
    packet id, properties skipped, payload) and handed to ``on_publish_fast``;
    PUBACKs are written as their four bytes. Everything else (CONNACK, SUBACK,
    PINGRESP, QoS 2) stays paho's. The hub sets no topic-alias maximum, so the
    broker sends full topics and no property changes the meaning of a message.
    """

    def __init__(self, on_close: Any, on_publish_fast: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._hub_on_close = on_close
        self._hub_on_publish = on_publish_fast

    def _create_socket(self) -> paho.SocketLike:
        # Overrides paho 2.x's socket factory (TCP + optional TLS) to add buffering.
        return _BufferedSocket(super()._create_socket(), self._hub_on_close)

    def _handle_publish(self) -> MQTTErrorCode:
        command = self._in_packet["command"]
        qos = (command & 0x06) >> 1
        if qos > 1:
            return super()._handle_publish()
        packet = self._in_packet["packet"]
        try:
            end = 2 + ((packet[0] << 8) | packet[1])
            topic = bytes(packet[2:end])
            mid = 0
            if qos:
                mid = (packet[end] << 8) | packet[end + 1]
                end += 2
            if self._protocol == MQTTProtocolVersion.MQTTv5:
                length = 0
                for shift in (0, 7, 14, 21):
                    byte = packet[end]
                    end += 1
                    length |= (byte & 0x7F) << shift
                    if not byte & 0x80:
                        break
                end += length
            if end > len(packet) or (qos and not mid):
                raise MalformedPacket("PUBLISH shorter than its lengths")
        except IndexError:
            raise MalformedPacket("truncated PUBLISH") from None
        self._hub_on_publish(topic, bytes(packet[end:]), mid, qos, bool(command & 0x01))
        return MQTTErrorCode.MQTT_ERR_SUCCESS


class MqttSource:
    """Receives device messages over one persistent MQTT session (QoS 1, manual ack).

    Use as an async context manager; it connects, and keeps reconnecting, in a
    background task. :meth:`next_batch` returns what arrived; :meth:`ack`
    acknowledges it once durable.
    """

    def __init__(
        self,
        settings: MqttSettings,
        *,
        clock: Clock,
        subscriptions: Sequence[str] | None = None,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._subscriptions = (
            list(subscriptions)
            if subscriptions is not None
            else default_subscriptions(settings.topic_prefix)
        )
        url = urlsplit(settings.url) if settings.url else None
        if url is not None:
            self._tls = url.scheme == "mqtts"
            self._host = url.hostname or "127.0.0.1"
            self._port = url.port or (8883 if self._tls else 1883)
            self._username = unquote(url.username) if url.username else None
            self._password = unquote(url.password) if url.password else None
        else:
            self._tls = False
            self._host, self._port = settings.embedded_host_port()
            self._username = self._password = None
        # Far more than receive-maximum allows in flight; only QoS 0 floods reach it,
        # and then reading pauses (TCP back-pressure) until the hub catches up.
        self._queue_limit = max(4 * settings.receive_maximum, 20_000)
        self._queue: deque[RawMessage] = deque()
        self._unacked: dict[int, RawMessage] = {}
        self._client: _Client | None = None
        self._sock: _BufferedSocket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._reading = False
        self._writing = False
        self._now_ms = 0
        self._connected = False
        self._connected_event: asyncio.Event | None = None
        self._wakeup: asyncio.Event | None = None
        self._lost: asyncio.Event | None = None
        self._connack: asyncio.Future[tuple[ReasonCode, bool]] | None = None
        self._suback: asyncio.Future[list[ReasonCode]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._misc_task: asyncio.Task[None] | None = None
        self.connections = 0
        self._closing = False
        self._v5 = settings.protocol == "5"

    # ------------------------------------------------------------------ public API

    @property
    def connected(self) -> bool:
        """True while the session is up and subscribed."""
        return self._connected

    @property
    def queued(self) -> int:
        """Messages received and not yet returned by :meth:`next_batch`."""
        return len(self._queue)

    @property
    def unacked(self) -> int:
        """Messages of the current connection not yet acknowledged."""
        return len(self._unacked)

    async def __aenter__(self) -> MqttSource:
        """Start connecting (in the background; see :meth:`wait_connected`)."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._connected_event = asyncio.Event()
        self._wakeup = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="hub.ingest.mqtt")
        self._misc_task = asyncio.create_task(self._misc(), name="hub.ingest.mqtt.keepalive")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Disconnect cleanly; the broker keeps the session and un-acked messages."""
        self._closing = True
        client, sock = self._client, self._sock
        if client is not None and sock is not None and not sock.closed and self._connected:
            # DISCONNECT with reason 0 keeps the session (expiry set at CONNECT). Then
            # wait for the broker to close its side: it has processed every PUBACK
            # sent before. Closing first, with its data unread, would reset the
            # connection and lose acks still in the broker's socket buffer.
            # Written by hand: paho's disconnect() closes the socket at once, unread
            # data and all. MQTT 5 DISCONNECT, reason 0 implied by remaining length 0
            # (the same two bytes are 3.1.1's DISCONNECT).
            sock.send(b"\xe0\x00")
            self._flush()
            if self._lost is not None:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(2.0):
                        await self._lost.wait()
        for task in (self._task, self._misc_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._set_connected(False)
        if self._sock is not None:
            self._sock.close()

    async def wait_connected(self, timeout: float) -> bool:  # noqa: ASYNC109 (the API asked)
        """Wait until the session is up; False if it is not within ``timeout`` seconds."""
        assert self._connected_event is not None, "use MqttSource as an async context manager"
        try:
            async with asyncio.timeout(timeout):
                await self._connected_event.wait()
        except TimeoutError:
            return False
        return True

    async def next_batch(self, max_messages: int = 5000) -> list[RawMessage]:
        """Wait for at least one message; return everything queued, up to ``max_messages``."""
        assert self._wakeup is not None, "use MqttSource as an async context manager"
        queue = self._queue
        while not queue:
            self._wakeup.clear()
            await self._wakeup.wait()
        n = min(len(queue), max_messages)
        batch = [queue.popleft() for _ in range(n)]
        if not self._reading and len(queue) < self._queue_limit // 2:
            self._start_reading()
        return batch

    def ack(self, messages: Sequence[RawMessage]) -> None:
        """Acknowledge ``messages`` (QoS 1 PUBACK) in the order given.

        Messages of an earlier connection are skipped: the broker redelivers them
        on the persistent session, and acking their packet id now would ack a
        different message.
        """
        sock = self._sock
        if sock is None or sock.closed or not messages:
            return
        unacked = self._unacked
        acks: list[bytes] = []
        for message in messages:
            mid = message.mid
            if message.qos and unacked.get(mid) is message:
                del unacked[mid]
                # PUBACK, reason "success" implied by the 2-byte form (MQTT 5 §3.4.2.1;
                # the same four bytes in 3.1.1).
                acks.append(_PUBACK[mid])
        if acks:
            sock.send(b"".join(acks))
            self._flush()

    # ------------------------------------------------------------------ connection

    async def _run(self) -> None:
        attempt = 0
        while not self._closing:
            try:
                await self._connect_once()
                attempt = 0
                assert self._lost is not None
                await self._lost.wait()
            except asyncio.CancelledError:
                raise
            except BrokerRefused as exc:
                log.error(  # noqa: TRY400 (a refusal, not a bug: no traceback)
                    "broker refused the hub", url=self._where(), reason=exc.reason
                )
            except (OSError, TimeoutError, ValueError) as exc:
                log.warning("broker unreachable", url=self._where(), error=str(exc) or repr(exc))
            finally:
                self._set_connected(False)
                if self._sock is not None:
                    self._sock.close()
                for waiter in (self._connack, self._suback):
                    if waiter is not None and waiter.done() and not waiter.cancelled():
                        waiter.exception()  # retrieved: the loss was handled here
            if self._is_closing():
                return
            delay = self._backoff(attempt)
            attempt += 1
            log.info("reconnecting to the broker", url=self._where(), in_s=round(delay, 2))
            await asyncio.sleep(delay)

    def _is_closing(self) -> bool:
        return self._closing

    def _backoff(self, attempt: int) -> float:
        # Jitter spreads the reconnects of many hubs after a broker restart.
        low = self._settings.reconnect_min_s
        return Backoff(low, max(low, self._settings.reconnect_max_s)).delay(attempt)

    async def _connect_once(self) -> None:
        loop = asyncio.get_running_loop()
        client = self._client or self._new_client()
        # A new connection: packet ids of the old one mean nothing now, and
        # anything not yet handed out will be redelivered by the broker.
        self._unacked = {}
        qos0 = [m for m in self._queue if m.qos == 0]
        self._queue.clear()  # in place: next_batch may be waiting on this deque
        self._queue.extend(qos0)
        self._lost = asyncio.Event()
        self._connack = loop.create_future()
        self._suback = None
        # DNS, TCP connect and the TLS handshake block: run them off the loop. The
        # CONNECT packet is only buffered there; it leaves in _flush below.
        connecting = in_daemon_thread(loop, client.reconnect, "hub.ingest.mqtt.connect")
        try:
            await asyncio.shield(connecting)
        except asyncio.CancelledError:
            connecting.add_done_callback(self._abandoned_connect)
            raise
        sock = client.socket()
        assert isinstance(sock, _BufferedSocket)
        self._sock = sock
        self._reading = self._writing = False
        self._start_reading()
        self._flush()
        # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation
        # that races with the result, and then __aexit__ would wait forever.
        async with asyncio.timeout(HANDSHAKE_TIMEOUT_S):
            reason, session_present = await self._connack
        if reason.is_failure:
            raise BrokerRefused(f"CONNACK {reason}", reason=str(reason))
        self._suback = loop.create_future()
        if self._v5:
            options = SubscribeOptions(
                qos=1,
                # Retained statuses only when the subscription is new, not on every reconnect.
                retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB,
            )
            client.subscribe([(topic, options) for topic in self._subscriptions])
        else:
            # 3.1.1 has no retain handling: the broker resends retained statuses on
            # every subscribe; the registry takes a repeated status as a no-op.
            client.subscribe([(topic, 1) for topic in self._subscriptions])
        self._flush()
        async with asyncio.timeout(HANDSHAKE_TIMEOUT_S):
            codes = await self._suback
        refused = [str(c) for c in codes if c.is_failure or c.value < 1]
        if refused:
            raise BrokerRefused(f"SUBACK {refused}", reason=", ".join(refused))
        self.connections += 1
        self._set_connected(True)
        log.info(
            "connected to the broker",
            url=self._where(),
            session_present=session_present,
            subscriptions=self._subscriptions,
        )

    def _new_client(self) -> _Client:
        s = self._settings
        client = _Client(
            self._socket_closed,
            self._on_publish,
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=s.client_id,
            protocol=MQTTProtocolVersion.MQTTv5 if self._v5 else MQTTProtocolVersion.MQTTv311,
            # 3.1.1's persistent session; MQTT 5 says it with clean_start and expiry below.
            clean_session=None if self._v5 else False,
            reconnect_on_failure=False,
            manual_ack=True,
        )
        if self._username is not None:
            client.username_pw_set(self._username, self._password)
        if self._tls:
            client.tls_set(ca_certs=str(s.ca_file) if s.ca_file else None)
        if self._v5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = SESSION_EXPIRY_S
            props.ReceiveMaximum = s.receive_maximum
            client.connect_async(
                self._host, self._port, s.keepalive_s, clean_start=False, properties=props
            )
        else:
            # No receive-maximum in 3.1.1: the broker's own in-flight limit applies,
            # and the queue limit pauses reading (TCP back-pressure) beyond it.
            client.connect_async(self._host, self._port, s.keepalive_s)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        self._client = client
        return client

    def _abandoned_connect(self, attempt: asyncio.Future[Any]) -> None:
        """A connect attempt finished after the hub stopped waiting: close what it opened."""
        if not attempt.cancelled():
            attempt.exception()  # retrieved: the attempt no longer matters
        self._close_client_socket()

    def _close_client_socket(self) -> None:
        if self._client is not None:
            sock = self._client.socket()
            if isinstance(sock, _BufferedSocket):
                sock.close()

    def _set_connected(self, up: bool) -> None:
        self._connected = up
        metrics.BROKER_CONNECTED.set(1 if up else 0)
        if self._connected_event is not None:
            if up:
                self._connected_event.set()
            else:
                self._connected_event.clear()

    def _where(self) -> str:
        return f"{'mqtts' if self._tls else 'mqtt'}://{self._host}:{self._port}"

    # ------------------------------------------------------------------ paho callbacks

    def _on_connect(
        self, _c: paho.Client, _u: Any, flags: Any, reason: ReasonCode, _p: Any
    ) -> None:
        if self._connack is not None and not self._connack.done():
            self._connack.set_result((reason, bool(flags.session_present)))

    def _on_subscribe(
        self, _c: paho.Client, _u: Any, _mid: int, codes: list[ReasonCode], _p: Any
    ) -> None:
        if self._suback is not None and not self._suback.done():
            self._suback.set_result(codes)

    def _on_disconnect(
        self, _c: paho.Client, _u: Any, _flags: Any, reason: ReasonCode, _p: Any
    ) -> None:
        if self._connected and not self._closing:
            log.warning("lost the broker", url=self._where(), reason=str(reason))
        self._set_connected(False)
        if self._lost is not None:
            self._lost.set()
        for waiter in (self._connack, self._suback):
            if waiter is not None and not waiter.done():
                waiter.set_exception(ConnectionError(f"connection closed: {reason}"))

    def _on_publish(self, topic: bytes, payload: bytes, mid: int, qos: int, retain: bool) -> None:
        raw = RawMessage(
            topic.decode("utf-8", errors="replace"), payload, self._now_ms, mid, qos, retain
        )
        self._queue.append(raw)
        if qos:
            self._unacked[mid] = raw

    # ------------------------------------------------------------------ socket events

    def _socket_closed(self, sock: _BufferedSocket) -> None:
        """Called by the socket wrapper as it closes, from whichever thread closes it."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        if threading.get_ident() != self._loop_thread:
            return  # only the executor's connect attempt; it never registered the fd
        fd = sock.fileno()
        if sock is self._sock:
            self._reading = self._writing = False
        with contextlib.suppress(ValueError, OSError):
            loop.remove_reader(fd)
            loop.remove_writer(fd)

    def _start_reading(self) -> None:
        sock = self._sock
        if sock is not None and not sock.closed and not self._reading and self._loop is not None:
            self._loop.add_reader(sock.fileno(), self._on_readable)
            self._reading = True

    def _stop_reading(self) -> None:
        sock = self._sock
        if sock is not None and self._reading and self._loop is not None:
            self._loop.remove_reader(sock.fileno())
            self._reading = False

    def _on_readable(self) -> None:
        client, sock = self._client, self._sock
        if client is None or sock is None or sock.closed:
            return
        self._now_ms = self._clock.now_ms()
        queue = self._queue
        before = len(queue)
        for _ in range(MAX_PACKETS_PER_WAKEUP):
            if client.loop_read() != MQTTErrorCode.MQTT_ERR_SUCCESS or sock.closed:
                break
            if not sock.pending:
                break
            if len(queue) >= self._queue_limit:
                self._stop_reading()
                break
        received = len(queue) - before
        if received > 0:
            metrics.MESSAGES_RECEIVED.inc(received)
            if self._wakeup is not None:
                self._wakeup.set()
        self._flush()

    def _on_writable(self) -> None:
        self._flush()

    def _flush(self) -> None:
        client, sock = self._client, self._sock
        if client is None or sock is None or sock.closed:
            return
        if client.want_write():
            client.loop_write()
        sock.flush()
        loop = self._loop
        if loop is None or sock.closed:
            return
        if sock.wants_write and not self._writing:
            loop.add_writer(sock.fileno(), self._on_writable)
            self._writing = True
        elif not sock.wants_write and self._writing:
            loop.remove_writer(sock.fileno())
            self._writing = False

    async def _misc(self) -> None:
        """paho housekeeping: keepalive pings, and noticing a silent broker."""
        while True:
            await asyncio.sleep(MISC_INTERVAL_S)
            if self._client is not None and self._connected:
                self._client.loop_misc()
                self._flush()
