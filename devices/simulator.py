"""The field-sensor fleet simulator (``hub simulate``; :class:`Fleet` for the demo and tests).

Every simulated device is its own MQTT client (paho-mqtt, QoS 1) with its own
session, retained birth ``{"state": "online"}`` and retained last will
``{"state": "offline"}`` on ``{prefix}/{district}/{asset_type}/{device_id}/status``,
publishing readings with a rising ``seq`` to ``.../telemetry`` (CONTRACT §1-2). All
clients of a process share one asyncio loop: paho's socket callbacks register each
connection with the loop (no thread per device), so a process carries thousands.

Store-and-forward: while a device has no connection (a scripted ``outage`` or a real
broker loss) it keeps its readings and, once back, publishes them as batch payloads
``{"readings": [...]}`` (a SenML pack in ``--senml`` mode) before going on.

Rate: ``rate`` readings per second across the fleet (each device every
``devices / rate`` seconds); ``None`` uses each asset type's catalog interval;
``0`` publishes as fast as the broker acknowledges (the machine's limit).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import heapq
import json
import math
import multiprocessing
import os
import random
import signal
import socket
import ssl
import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from devices.scenarios import (
    NO_EFFECTS,
    Effects,
    ResolvedScenario,
    Scenario,
    load_scenario,
    resolve,
)
from devices.signals import NOISE, DeviceSpec, SignalModel, rounded
from hub.catalog import Catalog, load_catalog
from hub.clock import Clock, SystemClock
from hub.logging import get_logger
from hub.messages import MetricValue
from hub.redact import redact_url
from hub.retry import Backoff

log = get_logger(__name__)

#: Short prefixes of device ids per asset type (``fg-d03-002``).
ID_PREFIX = {
    "flood_gauge": "fg",
    "water_main": "wm",
    "bridge": "br",
    "manhole": "mh",
    "air_quality": "aq",
    "streetlight": "sl",
    "traffic_counter": "tc",
}
#: Devices of each type in a district of 40 (a district always gets one of each first).
MIX = {
    "flood_gauge": 6,
    "water_main": 5,
    "manhole": 7,
    "streetlight": 11,
    "traffic_counter": 6,
    "air_quality": 3,
    "bridge": 2,
}
#: Centre of the fictional city the fleet stands in (lat, lon, degrees).
CITY_CENTRE = (51.5000, 7.5000)
_KM_LAT = 1 / 111.32
#: Readings per batch payload when backfilling (~120 bytes each: well under 64 KiB).
BACKFILL_BATCH = 200
#: A device that cannot connect tries again after ~0.5 s, doubling up to 30 s, jittered
#: (hub.retry): a fleet that lost its broker does not come back in one burst.
RECONNECT = Backoff(first_s=0.5, max_s=30.0)
#: QoS 1 messages a process may have unacknowledged before it waits for the broker.
MAX_OUTSTANDING = 2000
#: SenML units (RFC 8428 registry) for the catalog's units; others are left out.
SENML_UNITS = {"m": "m", "V": "V", "W": "W", "°C": "Cel", "L/s": "l/s", "%": "%RH"}

MALFORMED_KINDS = (
    "invalid_json",
    "nan",
    "infinity",
    "bad_topic",
    "empty_metrics",
    "nested_value",
    "bad_metric_name",
    "string_value",
    "future_ts",
    "not_an_object",
    "not_utf8",
)


# --------------------------------------------------------------------------- the fleet plan


def district_centre(n: int, districts: int) -> tuple[float, float]:
    """District 1 at the centre, the others on a ring ~2.5 km out."""
    lat0, lon0 = CITY_CENTRE
    if n == 1 or districts == 1:
        return lat0, lon0
    angle = 2 * math.pi * (n - 2) / (districts - 1)
    km_lon = 1 / (111.32 * math.cos(math.radians(lat0)))
    return lat0 + 2.5 * math.sin(angle) * _KM_LAT, lon0 + 2.5 * math.cos(angle) * km_lon


def _district_types(count: int) -> list[str]:
    """Asset types of a district's ``count`` devices: one of each, then by the mix."""
    types = list(MIX)[:count]
    credit = dict.fromkeys(MIX, 0.0)
    total = sum(MIX.values())
    while len(types) < count:  # smooth weighted round-robin
        for name, weight in MIX.items():
            credit[name] += weight
        best = max(credit, key=lambda k: credit[k])
        credit[best] -= total
        types.append(best)
    return types


def build_fleet(devices: int, districts: int, seed: int = 1) -> list[DeviceSpec]:
    """The fleet's devices: spread over ``d01..dNN`` and every asset type, with locations.

    Deterministic in its arguments. Ids are ``{type prefix}-{district}-{nnn}``, e.g.
    ``fg-d03-002``; flood gauges stand along the river that crosses the city.
    """
    if devices < 1 or districts < 1:
        raise ValueError("a fleet needs at least one device and one district")
    rng = random.Random(f"fleet:{seed}")  # noqa: S311 (placement, not crypto)
    km_lon = 1 / (111.32 * math.cos(math.radians(CITY_CENTRE[0])))
    specs: list[DeviceSpec] = []
    per_district = [
        devices // districts + (1 if k < devices % districts else 0) for k in range(districts)
    ]
    for k, count in enumerate(per_district, start=1):
        district = f"d{k:02d}"
        lat_c, lon_c = district_centre(k, districts)
        numbers: dict[str, int] = {}
        for asset_type in _district_types(count):
            numbers[asset_type] = numbers.get(asset_type, 0) + 1
            device_id = (
                f"{ID_PREFIX.get(asset_type, asset_type[:2])}-{district}-{numbers[asset_type]:03d}"
            )
            if asset_type == "flood_gauge":
                dx = rng.uniform(-1.2, 1.2)  # along the river, which meanders west to east
                dy = 0.3 * math.sin(dx * 2.0 + k)
            else:
                r, a = 1.2 * math.sqrt(rng.random()), rng.uniform(0, 2 * math.pi)
                dx, dy = r * math.cos(a), r * math.sin(a)
            specs.append(
                DeviceSpec(
                    device_id=device_id,
                    district=district,
                    asset_type=asset_type,
                    latitude=round(lat_c + dy * _KM_LAT, 6),
                    longitude=round(lon_c + dx * km_lon, 6),
                    index=len(specs),
                )
            )
    return specs


# --------------------------------------------------------------------------- payloads


def telemetry_topic(prefix: str, spec: DeviceSpec) -> str:
    """``{prefix}/{district}/{asset_type}/{device_id}/telemetry``."""
    return f"{prefix}/{spec.district}/{spec.asset_type}/{spec.device_id}/telemetry"


def status_topic(prefix: str, spec: DeviceSpec) -> str:
    """``{prefix}/{district}/{asset_type}/{device_id}/status``."""
    return f"{prefix}/{spec.district}/{spec.asset_type}/{spec.device_id}/status"


def json_reading(ts_ms: int, seq: int, values: dict[str, MetricValue]) -> dict[str, Any]:
    """One reading as CONTRACT §2's single-reading object."""
    return {"ts": ts_ms, "seq": seq, "metrics": values}


def encode_json(obj: object) -> bytes:
    """Compact JSON, as a constrained device would send it."""
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()


def senml_pack(
    device_id: str,
    readings: Sequence[tuple[int, int, dict[str, MetricValue]]],
    units: dict[str, str],
) -> list[dict[str, Any]]:
    """RFC 8428 pack of one or more readings: base name ``urn:dev:id:{id}:``, base time.

    Records of later readings carry their time offset ``t`` from the base time.
    """
    pack: list[dict[str, Any]] = []
    base_ts = readings[0][0]
    for ts_ms, _seq, values in readings:
        offset = (ts_ms - base_ts) / 1000
        for name, value in values.items():
            record: dict[str, Any] = {}
            if not pack:
                record["bn"] = f"urn:dev:id:{device_id}:"
                record["bt"] = base_ts / 1000
            record["n"] = name
            if offset:
                record["t"] = offset
            unit = units.get(name)
            if unit:
                record["u"] = unit
            if isinstance(value, bool):
                record["vb"] = value
            else:
                record["v"] = value
            pack.append(record)
    return pack


def malformed_message(
    kind: str, prefix: str, spec: DeviceSpec, ts_ms: int, metric: str
) -> tuple[str, bytes]:
    """A message the hub must reject (and count, and keep): topic and payload."""
    topic = telemetry_topic(prefix, spec)
    body: bytes
    if kind == "invalid_json":
        body = f'{{"ts":{ts_ms},"metrics":{{"{metric}":1.2'.encode()
    elif kind == "nan":
        body = f'{{"ts":{ts_ms},"metrics":{{"{metric}":NaN}}}}'.encode()
    elif kind == "infinity":
        body = f'{{"ts":{ts_ms},"metrics":{{"{metric}":-Infinity}}}}'.encode()
    elif kind == "bad_topic":
        topic = f"{prefix}/{spec.district.upper()}!/{spec.asset_type}/{spec.device_id}/telemetry"
        body = encode_json({"ts": ts_ms, "metrics": {metric: 1.0}})
    elif kind == "empty_metrics":
        body = encode_json({"ts": ts_ms, "metrics": {}})
    elif kind == "nested_value":
        body = encode_json({"ts": ts_ms, "metrics": {metric: {"value": 1.0}}})
    elif kind == "bad_metric_name":
        body = encode_json({"ts": ts_ms, "metrics": {"Water Level!": 1.0}})
    elif kind == "string_value":
        body = encode_json({"ts": ts_ms, "metrics": {metric: "high"}})
    elif kind == "future_ts":
        body = encode_json({"ts": ts_ms + 86_400_000, "metrics": {metric: 1.0}})
    elif kind == "not_an_object":
        body = b'"hello"'
    else:  # not_utf8
        body = b"\xff\xfe\x00garbage"
    return topic, body


# --------------------------------------------------------------------------- one device


@dataclass
class FleetStats:
    """What a fleet (one process) did."""

    published: int = 0
    acked: int = 0
    backfilled: int = 0
    malformed: int = 0
    statuses: int = 0
    connects: int = 0
    drops: int = 0
    elapsed_s: float = 0.0
    top_rate: float = 0.0
    warnings: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Acknowledged messages per second over the run."""
        return self.acked / self.elapsed_s if self.elapsed_s > 0 else 0.0


class _Device:
    """A simulated device: signals, seq, store-and-forward buffer, its MQTT connection."""

    def __init__(self, fleet: Fleet, spec: DeviceSpec) -> None:
        self.fleet = fleet
        self.spec = spec
        self.model = SignalModel(spec, fleet.seed)
        self.seq = 0
        self.buffer: deque[tuple[int, int, dict[str, MetricValue]]] = deque(maxlen=100_000)
        self.topic = telemetry_topic(fleet.prefix, spec)
        self.status_topic = status_topic(fleet.prefix, spec)
        self.connected = False
        self.wanted = True  # False while a scripted outage or silence holds the link down
        self.next_retry = 0.0
        self.failures = 0  # connection attempts failed in a row (reconnect backoff)
        self.stuck: dict[str, MetricValue] = {}
        self.stuck_since: float | None = None
        self._configured = False  # paho's connect() (host, port) done once; then reconnect()
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"{spec.device_id}@{fleet.prefix}",
            clean_session=True,
            protocol=mqtt.MQTTv311,
        )
        client.max_inflight_messages_set(1000)
        # Connects block the shared loop: keep an unreachable broker's cost short.
        client.connect_timeout = 2.0
        client.max_queued_messages_set(0)
        if fleet.username:
            client.username_pw_set(fleet.username, fleet.password)
        if fleet.tls:
            client.tls_set(cert_reqs=ssl.CERT_REQUIRED)
        # No "ts" in the will: it is sent by the broker when the connection is lost,
        # a time the device cannot know; the hub stamps it with its receive time.
        client.will_set(
            self.status_topic,
            encode_json({"state": "offline", "reason": "connection_lost"}),
            qos=1,
            retain=True,
        )
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        # No write callbacks: with none registered, paho writes each packet at once
        # inside publish() (one send, no selector churn per message); what a full
        # socket buffer leaves queued is flushed by flush() when writable again.
        self.client = client
        self._writer = False

    # ---- paho's socket callbacks: the asyncio loop drives every connection

    def _on_socket_open(self, client: mqtt.Client, _userdata: Any, sock: Any) -> None:
        self.fleet.loop.add_reader(sock, client.loop_read)

    def _on_socket_close(self, _client: mqtt.Client, _userdata: Any, sock: Any) -> None:
        self._writer = False
        with contextlib.suppress(ValueError, OSError):
            self.fleet.loop.remove_reader(sock)
            self.fleet.loop.remove_writer(sock)

    def flush(self) -> None:
        """Write what paho has queued; wait for writability only if the socket is full."""
        client = self.client
        if not client.want_write():
            return
        client.loop_write()
        sock = client.socket()
        if sock is None:
            return
        if client.want_write() and not self._writer:
            self._writer = True
            self.fleet.loop.add_writer(sock, self._on_writable)

    def _on_writable(self) -> None:
        client = self.client
        client.loop_write()
        if not client.want_write():
            sock = client.socket()
            self._writer = False
            if sock is not None:
                with contextlib.suppress(ValueError, OSError):
                    self.fleet.loop.remove_writer(sock)

    # ---- MQTT events

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            log.warning("device refused by broker", device=self.spec.device_id, reason=str(reason))
            return
        self.connected = True
        self.failures = 0
        self.fleet.stats.connects += 1
        birth = {
            "state": "online",
            "ts": self.fleet.clock.now_ms(),
            "asset_type": self.spec.asset_type,
            "fw": "sim-1.0",
        }
        self._send(self.status_topic, encode_json(birth), retain=True)
        self.fleet.stats.statuses += 1
        self.fleet.connected_count += 1
        self.fleet.on_device_connected()
        self._backfill()
        # Published inside paho's callback, these are queued, not yet written.
        self.fleet.loop.call_soon(self.flush)

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, _reason: Any, _p: Any) -> None:
        if self.connected:
            self.fleet.connected_count -= 1
        self.connected = False

    def _on_publish(self, _c: mqtt.Client, _u: Any, _mid: int, _rc: Any, _p: Any) -> None:
        self.fleet.note_ack()

    # ---- actions

    def connect(self) -> None:
        """Open the connection (TCP connect is synchronous; CONNACK arrives via the loop)."""
        try:
            if not self._configured:
                self._configured = True
                self.client.connect(
                    self.fleet.host, self.fleet.port, keepalive=self.fleet.keepalive
                )
            else:
                self.client.reconnect()
        except (OSError, ValueError) as exc:
            self.next_retry = time.monotonic() + RECONNECT.delay(self.failures)
            self.failures += 1
            log.debug("device connect failed", device=self.spec.device_id, error=str(exc))

    def drop(self) -> None:
        """Lose the connection abruptly (no DISCONNECT), so the broker sends the last will."""
        self.wanted = False
        self.fleet.stats.drops += 1
        sock = self.client.socket()
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def restore(self) -> None:
        """Come back: reconnect; the birth and the backfill follow on CONNACK."""
        self.wanted = True
        self.next_retry = 0.0
        if not self.connected:
            self.connect()

    def _send(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
            self.fleet.outstanding += 1

    def _backfill(self) -> None:
        if not self.buffer:
            return
        readings = list(self.buffer)
        self.buffer.clear()
        for start in range(0, len(readings), BACKFILL_BATCH):
            chunk = readings[start : start + BACKFILL_BATCH]
            if self.fleet.senml:
                payload = encode_json(senml_pack(self.spec.device_id, chunk, self.fleet.units))
            else:
                payload = encode_json({"readings": [json_reading(*r) for r in chunk]})
            self._send(self.topic, payload)
            self.fleet.stats.published += 1
        self.fleet.stats.backfilled += len(readings)
        log.info("device backfilled", device=self.spec.device_id, readings=len(readings))

    def emit(self, elapsed: float) -> None:
        """Take one reading and publish it (or keep it while offline)."""
        fleet = self.fleet
        effects = fleet.effects(self.spec.device_id, elapsed)
        if effects.silent:
            return
        ts_ms = fleet.clock.now_ms()
        values = self.model.sample(ts_ms)
        if effects is not NO_EFFECTS:
            values = self._apply(effects, values)
        values = rounded(values)
        if fleet.malformed and fleet.rng.random() < fleet.malformed and self.connected:
            kind = MALFORMED_KINDS[fleet.stats.malformed % len(MALFORMED_KINDS)]
            topic, payload = malformed_message(
                kind, fleet.prefix, self.spec, ts_ms, next(iter(values))
            )
            self._send(topic, payload)
            fleet.stats.malformed += 1
            fleet.stats.published += 1
            return
        self.seq += 1
        if effects.buffering or not self.connected:
            self.buffer.append((ts_ms, self.seq, values))
            return
        if fleet.senml:
            payload = encode_json(
                senml_pack(self.spec.device_id, [(ts_ms, self.seq, values)], fleet.units)
            )
        else:
            payload = encode_json(json_reading(ts_ms, self.seq, values))
        self._send(self.topic, payload)
        fleet.stats.published += 1

    def _apply(self, effects: Effects, values: dict[str, MetricValue]) -> dict[str, MetricValue]:
        for metric, target, progress in effects.ramps:
            natural = values.get(metric)
            if natural is None or isinstance(natural, bool):
                continue
            scripted = target + self.model.rng.gauss(0.0, NOISE.get(metric, 0.01))
            values[metric] = (1 - progress) * float(natural) + progress * scripted
        if effects.flatline is not None:
            if self.stuck_since != effects.flatline_since:
                self.stuck = dict(values)
                self.stuck_since = effects.flatline_since
            for metric in effects.flatline or values.keys():
                if metric in self.stuck:
                    values[metric] = self.stuck[metric]
        else:
            self.stuck_since = None
        return values

    def close(self) -> None:
        """Graceful stop: retained ``offline`` status, then DISCONNECT (no last will)."""
        if self.connected:
            status = {"state": "offline", "ts": self.fleet.clock.now_ms(), "reason": "shutdown"}
            self._send(self.status_topic, encode_json(status), retain=True)
            self.fleet.stats.statuses += 1


# --------------------------------------------------------------------------- the fleet


class Fleet:
    """A simulated fleet on one asyncio loop: ``await Fleet(url, ...).run(stop_event)``."""

    def __init__(
        self,
        mqtt_url: str,
        *,
        prefix: str = "city",
        devices: int = 100,
        districts: int = 6,
        rate: float | None = None,
        scenario: Scenario | None = None,
        clock: Clock | None = None,
        seed: int = 1,
        senml: bool = False,
        malformed: float = 0.0,
        catalog: Catalog | None = None,
        shard: tuple[int, int] = (0, 1),
        keepalive: int = 30,
    ) -> None:
        if not 0.0 <= malformed <= 1.0:
            raise ValueError("malformed must be a share between 0 and 1")
        if rate is not None and rate < 0:
            raise ValueError("rate must be >= 0 (0: as fast as the broker acknowledges)")
        url = urlsplit(mqtt_url)
        if url.scheme not in {"mqtt", "mqtts"} or not url.hostname:
            raise ValueError(
                f"{redact_url(mqtt_url)!r} is not mqtt://host:port or mqtts://host:port"
            )
        self.host = url.hostname
        self.tls = url.scheme == "mqtts"
        self.port = url.port or (8883 if self.tls else 1883)
        self.username = unquote(url.username) if url.username else None
        self.password = unquote(url.password) if url.password else None
        self.prefix = prefix
        self.rate = rate
        self.seed = seed
        self.senml = senml
        self.malformed = malformed
        self.keepalive = keepalive
        self.clock: Clock = clock or SystemClock()
        self.catalog = catalog or load_catalog()
        self.rng = random.Random(f"fleet-run:{seed}:{shard[0]}")  # noqa: S311
        self.units = {
            metric: SENML_UNITS[spec.unit]
            for t in self.catalog.asset_types()
            if (asset := self.catalog.spec(t)) is not None
            for metric, spec in asset.metrics.items()
            if spec.unit in SENML_UNITS
        }
        #: Every device of the fleet (all shards): what the demo provisions.
        self.specs = build_fleet(devices, districts, seed)
        index, shards = shard
        self._mine = [s for s in self.specs if s.index % shards == index]
        self.stats = FleetStats()
        self.scenario: ResolvedScenario | None = None
        if scenario is not None:
            metrics_of = {
                t: list(spec.metrics)
                for t in self.catalog.asset_types()
                if (spec := self.catalog.spec(t)) is not None
            }
            self.scenario, warnings = resolve(scenario, self.specs, metrics_of, seed)
            self.stats.warnings.extend(warnings)
            for warning in warnings:
                log.warning("scenario event does not fit the fleet", problem=warning)
        self.outstanding = 0
        self.connected_count = 0
        self.connected = asyncio.Event()  # set once every device has connected once
        self._drained: asyncio.Event | None = None
        self._idle = asyncio.Event()
        self._window_start = 0.0
        self._window_acks = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._devices: dict[str, _Device] = {}
        self._start = 0.0

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop the fleet runs on."""
        assert self._loop is not None
        return self._loop

    def effects(self, device_id: str, elapsed: float) -> Effects:
        """The scenario's effects on a device now."""
        if self.scenario is None:
            return NO_EFFECTS
        return self.scenario.effects(device_id, elapsed)

    def on_device_connected(self) -> None:
        """A device got its CONNACK."""
        if self.connected_count >= len(self._devices):
            self.connected.set()

    def note_ack(self) -> None:
        """The broker acknowledged one of our QoS 1 messages."""
        self.stats.acked += 1
        self.outstanding -= 1
        self._window_acks += 1
        now = time.monotonic()
        if now - self._window_start >= 1.0:
            self.stats.top_rate = max(
                self.stats.top_rate, self._window_acks / (now - self._window_start)
            )
            self._window_start, self._window_acks = now, 0
        if self.outstanding <= 0:
            self._idle.set()
        if self._drained is not None and self.outstanding <= MAX_OUTSTANDING // 2:
            self._drained.set()

    def device(self, device_id: str) -> _Device:
        """A device of this process by id (for tests)."""
        return self._devices[device_id]

    def period_s(self, spec: DeviceSpec) -> float:
        """Seconds between two readings of ``spec``."""
        if self.rate is None:
            return self.catalog.expected_interval_s(spec.asset_type) or 60.0
        return len(self.specs) / self.rate if self.rate > 0 else 0.0

    async def run(self, stop: asyncio.Event) -> FleetStats:
        """Connect every device, publish until ``stop`` is set, then go offline cleanly."""
        self._loop = asyncio.get_running_loop()
        self._drained = asyncio.Event()
        self._devices = {s.device_id: _Device(self, s) for s in self._mine}
        self._start = time.monotonic()
        self._window_start = self._start
        for device in self._devices.values():
            device.connect()
            # TCP connect is synchronous: yield after each, so a broker on this very
            # loop (the demo's embedded one) can accept before its backlog fills.
            await asyncio.sleep(0)
        tasks = [
            asyncio.create_task(self._keepalive(), name="sim.keepalive"),
            asyncio.create_task(self._timeline(), name="sim.scenario"),
            asyncio.create_task(self._publish(), name="sim.publish"),
        ]
        try:
            await self._until(stop, tasks)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self._close()
        self.stats.elapsed_s = time.monotonic() - self._start
        if self.stats.top_rate == 0 and self.stats.elapsed_s > 0:
            self.stats.top_rate = self.stats.rate
        return self.stats

    @staticmethod
    async def _until(stop: asyncio.Event, tasks: list[asyncio.Task[None]]) -> None:
        """Wait for ``stop``; a task that fails ends the run with its error."""
        stopping = asyncio.create_task(stop.wait())
        pending: set[asyncio.Task[Any]] = {*tasks, stopping}
        try:
            while stopping in pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if task is not stopping and task.exception() is not None:
                        raise task.exception()  # type: ignore[misc]
        finally:
            stopping.cancel()

    async def _close(self) -> None:
        for device in self._devices.values():
            device.close()
        if self.outstanding > 0:
            self._idle.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), timeout=5.0)
        for device in self._devices.values():
            if device.connected:
                device.client.disconnect()
        # paho closes each socket once its DISCONNECT is written; wait for that, so
        # the broker sees clean disconnects (no last will), then close what is left.
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and any(  # noqa: ASYNC110 (paho offers no awaitable)
            d.client.socket() is not None for d in self._devices.values()
        ):
            await asyncio.sleep(0.01)
        for device in self._devices.values():
            sock = device.client.socket()
            if sock is not None:
                self._on_closed_socket(sock)
                with contextlib.suppress(OSError):
                    sock.close()

    def _on_closed_socket(self, sock: Any) -> None:
        with contextlib.suppress(ValueError, OSError):
            self.loop.remove_reader(sock)
            self.loop.remove_writer(sock)

    async def _keepalive(self) -> None:
        """Once a second: paho's keepalive pings, and reconnects with capped backoff."""
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for device in self._devices.values():
                if device.connected:
                    device.client.loop_misc()
                    device.flush()
                elif device.wanted and now >= device.next_retry:
                    device.next_retry = now + RECONNECT.delay(device.failures)
                    device.connect()

    async def _timeline(self) -> None:
        """The scenario's connection changes (drops with last will, restores with backfill)."""
        if self.scenario is None:
            return
        for action in self.scenario.actions:
            device = self._devices.get(action.device_id)
            if device is None:
                continue
            delay = self._start + action.at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            log.info("scenario", action=action.kind, device=action.device_id, at_s=action.at)
            if action.kind == "drop":
                device.drop()
            else:
                device.restore()

    async def _wait_for_broker(self) -> None:
        assert self._drained is not None
        if self.outstanding > MAX_OUTSTANDING:
            self._drained.clear()
            await self._drained.wait()

    async def _publish(self) -> None:
        devices = list(self._devices.values())
        if not devices:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.connected.wait(), timeout=10.0)
        if self.rate == 0:
            await self._publish_flat_out(devices)
            return
        start = time.monotonic()
        heap: list[tuple[float, int]] = []
        for n, device in enumerate(devices):
            period = self.period_s(device.spec)
            heap.append((start + period * n / len(devices) % period, n))
        heapq.heapify(heap)
        while True:
            now = time.monotonic()
            due, n = heap[0]
            if due > now:
                await asyncio.sleep(min(due - now, 0.25))
                continue
            burst = 0
            while heap and heap[0][0] <= now and burst < 500:
                due, n = heapq.heappop(heap)
                device = devices[n]
                device.emit(now - self._start)
                period = self.period_s(device.spec)
                # Behind by more than a period (machine too slow): skip, do not burst.
                heapq.heappush(heap, (max(due + period, now - period), n))
                burst += 1
            await self._wait_for_broker()
            await asyncio.sleep(0)

    async def _publish_flat_out(self, devices: list[_Device]) -> None:
        while True:
            for n, device in enumerate(devices):
                device.emit(time.monotonic() - self._start)
                if n % 200 == 199:
                    await self._wait_for_broker()
                    await asyncio.sleep(0)
            await self._wait_for_broker()
            await asyncio.sleep(0)


# --------------------------------------------------------------------------- hub simulate


@dataclass(frozen=True, slots=True)
class _WorkerArgs:
    mqtt_url: str
    prefix: str
    devices: int
    districts: int
    rate: float | None
    scenario: str | None
    senml: bool
    malformed: float
    seed: int
    duration: float | None
    shard: tuple[int, int]


async def _run_worker(args: _WorkerArgs) -> FleetStats:
    scenario = load_scenario(args.scenario) if args.scenario else None
    fleet = Fleet(
        args.mqtt_url,
        prefix=args.prefix,
        devices=args.devices,
        districts=args.districts,
        rate=args.rate,
        scenario=scenario,
        seed=args.seed,
        senml=args.senml,
        malformed=args.malformed,
        shard=args.shard,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if args.duration is not None:
        loop.call_later(args.duration, stop.set)
    return await fleet.run(stop)


def _worker_main(args: _WorkerArgs, results: Any) -> None:
    stats = asyncio.run(_run_worker(args))
    results.put((args.shard[0], stats))


def _report(index: int, stats: FleetStats) -> str:
    return (
        f"simulate: process {index}: {stats.published} messages published, {stats.acked} acked "
        f"in {stats.elapsed_s:.1f} s = {stats.rate:.0f} msg/s (top 1 s window {stats.top_rate:.0f} "
        f"msg/s); backfilled {stats.backfilled} readings, {stats.malformed} malformed, "
        f"{stats.drops} connections dropped"
    )


def simulate_main(args: argparse.Namespace) -> int:
    """``hub simulate``: run a fleet until ``--duration`` passes or SIGINT; print the figures.

    ``args.processes`` (optional, default 1) splits the fleet over that many processes,
    each with its own share of the devices and of the rate.
    """
    from hub.yamlfile import FileProblem

    processes = int(getattr(args, "processes", 1) or 1)
    rate: float | None = args.rate
    try:
        if args.scenario:
            load_scenario(args.scenario)  # fail early with file:line messages
        Fleet(args.mqtt, devices=1, districts=1)  # validates the URL
    except FileProblem as exc:
        for message in exc.messages:
            print(message, file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"hub simulate: {exc}", file=sys.stderr)
        return 2
    if args.devices < 1 or args.districts < 1 or not 0 <= args.malformed <= 1:
        print(
            "hub simulate: --devices, --districts >= 1 and 0 <= --malformed <= 1", file=sys.stderr
        )
        return 2
    worker = [
        _WorkerArgs(
            mqtt_url=args.mqtt,
            prefix=args.prefix,
            devices=args.devices,
            districts=args.districts,
            rate=rate,
            scenario=args.scenario,
            senml=args.senml,
            malformed=args.malformed,
            seed=args.seed,
            duration=args.duration,
            shard=(k, processes),
        )
        for k in range(processes)
    ]
    print(
        f"simulate: {args.devices} devices in {args.districts} districts -> "
        f"{redact_url(args.mqtt)} "
        f"prefix {args.prefix!r}, rate {'max' if rate == 0 else rate} readings/s, "
        f"{processes} process(es)",
        flush=True,
    )
    if processes == 1:
        try:
            stats = asyncio.run(_run_worker(worker[0]))
        except KeyboardInterrupt:
            return 130
        for warning in stats.warnings:
            print(f"simulate: warning: {warning}", file=sys.stderr)
        print(_report(0, stats), flush=True)
        return 0
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    procs = [ctx.Process(target=_worker_main, args=(w, results), daemon=True) for w in worker]
    for proc in procs:
        proc.start()
    collected: dict[int, FleetStats] = {}
    try:
        while len(collected) < processes and any(p.is_alive() for p in procs):
            with contextlib.suppress(Exception):
                index, stats = results.get(timeout=0.5)
                collected[index] = stats
    except KeyboardInterrupt:
        for proc in procs:
            if proc.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGINT)
        while len(collected) < processes and any(p.is_alive() for p in procs):
            with contextlib.suppress(Exception):
                index, stats = results.get(timeout=1.0)
                collected[index] = stats
    for proc in procs:
        proc.join(timeout=10)
    for index in sorted(collected):
        print(_report(index, collected[index]), flush=True)
    total = sum(s.rate for s in collected.values())
    print(f"simulate: all processes: {total:.0f} msg/s", flush=True)
    return 0 if len(collected) == processes else 1
