"""The fleet simulator against a real Mosquitto: what it publishes is what CONTRACT §1-2 says."""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import subprocess
import sys
import threading
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from devices.scenarios import Scenario
from devices.simulator import Fleet, FleetStats
from hub.catalog import load_catalog
from hub.messages import ASSET_TYPE_RE, DEVICE_ID_RE, DISTRICT_RE, METRIC_RE
from tests.conftest import Names
from tests.services import Mosquitto, env_without_hub, wait_for

pytestmark = pytest.mark.integration

CATALOG = load_catalog()


class Collector:
    """A plain paho subscriber that keeps every message under a prefix."""

    def __init__(self, broker: Mosquitto, prefix: str) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.connect("127.0.0.1", broker.port)
        self.client.subscribe(f"{prefix}/#", qos=1)
        self.client.loop_start()
        assert subscribed.wait(5)

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, msg.payload, bool(msg.retain)))

    def snapshot(self) -> list[tuple[str, bytes, bool]]:
        with self._lock:
            return list(self.messages)

    def statuses(self, device_id: str) -> list[dict[str, Any]]:
        return [
            json.loads(p)
            for t, p, _ in self.snapshot()
            if t.endswith("/status") and t.split("/")[-2] == device_id
        ]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def collect(mosquitto: Mosquitto, names: Names) -> Iterator[Collector]:
    collector = Collector(mosquitto, names.topic_prefix())
    yield collector
    collector.close()


def check_reading(obj: Any, metrics_allowed: set[str]) -> dict[str, Any]:
    """CONTRACT §2 single reading, checked field by field."""
    assert isinstance(obj, dict)
    assert set(obj) <= {"ts", "seq", "metrics"}
    assert isinstance(obj["ts"], int)
    assert obj["ts"] > 1_700_000_000_000
    assert isinstance(obj["seq"], int)
    assert obj["seq"] >= 0
    assert isinstance(obj["metrics"], dict)
    assert obj["metrics"]
    for name, value in obj["metrics"].items():
        assert METRIC_RE.fullmatch(name)
        assert name in metrics_allowed
        assert isinstance(value, bool | int | float)
        assert not isinstance(value, float) or math.isfinite(value)
    return obj


def parse_topic(topic: str, prefix: str) -> tuple[str, str, str, str]:
    """CONTRACT §1 topic: prefix/district/asset_type/device_id/(telemetry|status)."""
    assert topic.startswith(prefix + "/")
    parts = topic[len(prefix) + 1 :].split("/")
    assert len(parts) == 4, topic
    district, asset_type, device_id, kind = parts
    assert DISTRICT_RE.fullmatch(district)
    assert district != "alerts"
    assert ASSET_TYPE_RE.fullmatch(asset_type)
    assert DEVICE_ID_RE.fullmatch(device_id)
    assert kind in {"telemetry", "status"}
    return district, asset_type, device_id, kind


def strict_json(payload: bytes) -> Any:
    def refuse(constant: str) -> Any:
        raise ValueError(constant)

    return json.loads(payload.decode("utf-8"), parse_constant=refuse)


def readings_by_device(
    messages: list[tuple[str, bytes, bool]], prefix: str
) -> dict[str, list[tuple[int, dict[str, Any], bool]]]:
    """device id -> [(seq, reading, came_in_a_batch)], all payloads contract-checked."""
    out: dict[str, list[tuple[int, dict[str, Any], bool]]] = defaultdict(list)
    for topic, payload, _ in messages:
        _, asset_type, device_id, kind = parse_topic(topic, prefix)
        if kind != "telemetry":
            continue
        spec = CATALOG.spec(asset_type)
        assert spec is not None
        doc = strict_json(payload)
        if "readings" in doc:
            assert set(doc) == {"readings"}
            assert 1 <= len(doc["readings"]) <= 1000
            for r in doc["readings"]:
                out[device_id].append((check_reading(r, set(spec.metrics))["seq"], r, True))
        else:
            out[device_id].append((check_reading(doc, set(spec.metrics))["seq"], doc, False))
    return out


async def run_fleet(fleet: Fleet, seconds: float) -> FleetStats:
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(seconds, stop.set)
    return await fleet.run(stop)


async def test_fleet_publishes_contract_payloads_seq_and_retained_births(
    mosquitto: Mosquitto, names: Names, collect: Collector
) -> None:
    """Valid topics and payloads for every asset type, seq rising by 1, retained births."""
    prefix = names.topic_prefix()
    fleet = Fleet(mosquitto.url, prefix=prefix, devices=14, districts=2, rate=140, seed=5)
    stop = asyncio.Event()
    running = asyncio.create_task(fleet.run(stop))
    await asyncio.wait_for(fleet.connected.wait(), 10)
    # A late subscriber gets every device's birth as a retained message.
    late = Collector(mosquitto, prefix)
    try:
        await asyncio.to_thread(
            wait_for,
            lambda: sum(1 for t, _, r in late.snapshot() if t.endswith("/status") and r) >= 14,
            timeout=10,
            what="retained births",
        )
        births = [(t, strict_json(p)) for t, p, r in late.snapshot() if t.endswith("/status") and r]
    finally:
        late.close()
    assert {b["state"] for _, b in births} == {"online"}
    assert all(isinstance(b["ts"], int) for _, b in births)
    await asyncio.to_thread(
        wait_for,
        lambda: sum(1 for t, _, _ in collect.snapshot() if t.endswith("telemetry")) >= 200,
        timeout=20,
        what="200 readings",
    )
    stop.set()
    stats = await running
    assert stats.acked >= stats.published
    per_device = readings_by_device(collect.snapshot(), prefix)
    assert len(per_device) == 14
    assert {d.split("-")[0] for d in per_device} == {"fg", "wm", "br", "mh", "aq", "sl", "tc"}
    for device_id, readings in per_device.items():
        seqs = [s for s, _, _ in readings]
        assert seqs == list(range(1, len(seqs) + 1)), device_id
        stamps = [r["ts"] for _, r, _ in readings]
        assert stamps == sorted(stamps)

    # Clean stop: every device's last status is a retained "offline" with a time. The
    # fleet has them acknowledged by the broker; the collector may receive them later.
    def all_offline() -> bool:
        return all(
            (sts := collect.statuses(d)) and sts[-1].get("state") == "offline" for d in per_device
        )

    await asyncio.to_thread(wait_for, all_offline, timeout=10, what="final offline statuses")
    finals = {d: collect.statuses(d)[-1] for d in per_device}
    assert all(s["state"] == "offline" and s["reason"] == "shutdown" for s in finals.values())


async def test_outage_backfills_in_one_batch_without_gaps(
    mosquitto: Mosquitto, names: Names, collect: Collector
) -> None:
    """A scripted outage: last will, then birth and the kept readings in a batch, seq unbroken."""
    prefix = names.topic_prefix()
    scenario = Scenario.model_validate(
        {
            "name": "t",
            "events": [
                {"at": "1s", "kind": "outage", "devices": ["fg-d01-001"], "duration": "1.5s"}
            ],
        }
    )
    fleet = Fleet(
        mosquitto.url, prefix=prefix, devices=7, districts=1, rate=70, scenario=scenario, seed=2
    )
    stats = await run_fleet(fleet, 4.0)
    assert stats.backfilled >= 8
    readings = readings_by_device(collect.snapshot(), prefix)["fg-d01-001"]
    seqs = sorted(s for s, _, _ in readings)
    assert seqs == list(range(1, len(seqs) + 1))
    batched = [s for s, _, in_batch in readings if in_batch]
    assert len(batched) == stats.backfilled
    assert batched == sorted(batched)
    states = [s["state"] for s in collect.statuses("fg-d01-001")]
    assert states[:3] == ["online", "offline", "online"]
    will = collect.statuses("fg-d01-001")[1]
    assert will == {"state": "offline", "reason": "connection_lost"}
    # The batch comes after the new birth (readings are published once the link is back).
    order = [
        ("batch" if t.endswith("telemetry") and b'"readings"' in p else json.loads(p)["state"])
        for t, p, _ in collect.snapshot()
        if t.split("/")[-2] == "fg-d01-001" and (t.endswith("status") or b'"readings"' in p)
    ]
    assert order.index("batch") > order.index("online", 1)


async def test_silent_gauge_stops_then_last_will(
    mosquitto: Mosquitto, names: Names, collect: Collector
) -> None:
    """A silent device publishes nothing after `at`; its will says offline `offline_after` later."""
    prefix = names.topic_prefix()
    scenario = Scenario.model_validate(
        {
            "name": "t",
            "events": [
                {"at": "0.5s", "kind": "silent", "devices": ["wm-d01-001"], "offline_after": "1s"}
            ],
        }
    )
    fleet = Fleet(
        mosquitto.url, prefix=prefix, devices=7, districts=1, rate=70, scenario=scenario, seed=2
    )
    await run_fleet(fleet, 3.0)
    per_device = readings_by_device(collect.snapshot(), prefix)
    silent = per_device.get("wm-d01-001", [])
    assert len(silent) <= 8  # at most ~0.5 s of readings at 10/s, then none
    assert len(per_device["fg-d01-001"]) >= 15
    states = [s["state"] for s in collect.statuses("wm-d01-001")]
    assert states == ["online", "offline"]  # will; no graceful "shutdown" after it


async def test_senml_mode(mosquitto: Mosquitto, names: Names, collect: Collector) -> None:
    """--senml publishes RFC 8428 packs whose names are the catalog's metrics."""
    prefix = names.topic_prefix()
    fleet = Fleet(mosquitto.url, prefix=prefix, devices=7, districts=1, rate=70, senml=True)
    await run_fleet(fleet, 1.5)
    packs = [(t, strict_json(p)) for t, p, _ in collect.snapshot() if t.endswith("/telemetry")]
    assert len(packs) >= 50
    for topic, pack in packs:
        _, asset_type, device_id, _ = parse_topic(topic, prefix)
        spec = CATALOG.spec(asset_type)
        assert spec is not None
        assert isinstance(pack, list)
        assert pack[0]["bn"] == f"urn:dev:id:{device_id}:"
        assert isinstance(pack[0]["bt"], float)
        assert {r["n"] for r in pack} == set(spec.metrics)
        for record in pack:
            assert ("v" in record) != ("vb" in record)


async def test_malformed_share(mosquitto: Mosquitto, names: Names, collect: Collector) -> None:
    """--malformed 0.3: about that share of messages break the contract; the rest are valid."""
    prefix = names.topic_prefix()
    fleet = Fleet(mosquitto.url, prefix=prefix, devices=14, districts=2, rate=280, malformed=0.3)
    stats = await run_fleet(fleet, 2.0)
    messages = [m for m in collect.snapshot() if "/status" not in m[0]]
    bad = 0
    for topic, payload, _ in messages:
        try:
            _, asset_type, _, _ = parse_topic(topic, prefix)
            spec = CATALOG.spec(asset_type)
            assert spec is not None
            doc = strict_json(payload)
            assert doc["ts"] < fleet.clock.now_ms() + 300_000
            check_reading(doc, set(spec.metrics))
        except (AssertionError, ValueError, KeyError, TypeError, UnicodeDecodeError):
            bad += 1
    assert len(messages) >= 300
    assert bad == stats.malformed
    assert 0.2 < bad / len(messages) < 0.4


def test_simulate_cli_runs_reports_and_leaves_wills_when_killed(
    mosquitto: Mosquitto, names: Names, collect: Collector
) -> None:
    """`hub simulate` prints its rate after --duration; SIGKILLed, every device's will fires."""
    prefix = names.topic_prefix()
    base = [sys.executable, "-m", "hub", "simulate", "--mqtt", mosquitto.url, "--prefix", prefix]
    env = env_without_hub()
    done = subprocess.run(
        [*base, "--devices", "7", "--districts", "1", "--rate", "50", "--duration", "1.5"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "msg/s" in done.stdout
    collect.messages.clear()
    proc = subprocess.Popen(
        [*base, "--devices", "5", "--districts", "1", "--rate", "10", "--seed", "9"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        wait_for(
            lambda: sum(1 for t, p, _ in collect.snapshot() if b'"online"' in p) >= 5,
            timeout=20,
            what="five births",
        )
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        wait_for(
            lambda: sum(1 for t, p, _ in collect.snapshot() if b'"connection_lost"' in p) >= 5,
            timeout=20,
            what="five last wills",
        )
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    bad = subprocess.run(
        [*base, "--scenario", "no-such-scenario"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert bad.returncode == 1
    assert "no such scenario" in bad.stderr


async def test_broker_restart_readings_kept_and_backfilled(own_mosquitto: Mosquitto) -> None:
    """Broker down for a while: devices keep their readings and backfill them when it is back."""
    prefix = "t-broker-restart"
    received: list[tuple[str, bytes]] = []
    lock = threading.Lock()
    sub = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id="collector-restart", clean_session=False
    )
    sub.reconnect_delay_set(0.1, 0.5)

    def on_connect(client: mqtt.Client, *_: Any) -> None:
        client.subscribe(f"{prefix}/#", qos=1)

    def on_message(_c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with lock:
            received.append((msg.topic, msg.payload))

    sub.on_connect = on_connect
    sub.on_message = on_message
    sub.connect("127.0.0.1", own_mosquitto.port)
    sub.loop_start()
    fleet = Fleet(own_mosquitto.url, prefix=prefix, devices=7, districts=1, rate=35, seed=4)
    stop = asyncio.Event()
    running = asyncio.create_task(fleet.run(stop))
    try:
        await asyncio.wait_for(fleet.connected.wait(), 10)
        await asyncio.to_thread(
            wait_for, lambda: len(received) >= 30, timeout=10, what="readings before"
        )
        await asyncio.to_thread(own_mosquitto.stop)
        await asyncio.sleep(1.5)  # the outage itself: devices must keep what they read meanwhile
        await asyncio.to_thread(own_mosquitto.start)
        await asyncio.to_thread(
            wait_for, lambda: fleet.stats.backfilled >= 7, timeout=20, what="backfill"
        )
        await asyncio.to_thread(
            wait_for,
            lambda: any(b'"readings"' in p for _, p in list(received)),
            timeout=20,
            what="a batch to arrive",
        )
    finally:
        stop.set()
        await running
        sub.loop_stop()
        sub.disconnect()
    per_device = readings_by_device([(t, p, False) for t, p in received], prefix)
    for device_id, readings in per_device.items():
        seqs = sorted({s for s, _, _ in readings})  # QoS 1 may redeliver: duplicates allowed
        assert seqs == list(range(1, seqs[-1] + 1)), device_id


@pytest.mark.parametrize("senml", [False, True], ids=["json", "senml"])
async def test_hub_decoder_takes_every_reading_and_refuses_every_malformed_message(
    mosquitto: Mosquitto, names: Names, collect: Collector, senml: bool
) -> None:
    """The hub's decoder takes every reading and status, and refuses every malformed message."""
    from hub.ingest.decode import Decoder
    from hub.messages import RawMessage
    from hub.settings import IngestSettings

    prefix = names.topic_prefix()
    scenario = Scenario.model_validate(
        {
            "name": "t",
            "events": [
                {"at": "0.3s", "kind": "outage", "devices": ["mh-d01-001"], "duration": "1s"}
            ],
        }
    )
    fleet = Fleet(
        mosquitto.url,
        prefix=prefix,
        devices=14,
        districts=2,
        rate=280,
        malformed=0.1,
        senml=senml,
        scenario=scenario,
    )
    stats = await run_fleet(fleet, 2.0)
    # Wills and last statuses reach the collector after the fleet stops: wait for them.
    wanted = stats.statuses + stats.drops
    await asyncio.to_thread(
        wait_for,
        lambda: sum(t.endswith("/status") for t, _p, _r in collect.snapshot()) >= wanted,
        timeout=15,
        what=f"{wanted} status messages",
    )
    decoder = Decoder(IngestSettings(), prefix)
    readings = rejections = statuses = 0
    reasons: set[str] = set()
    for topic, payload, retain in collect.snapshot():
        decoded = decoder.decode(
            RawMessage(topic, payload, received_ms=fleet.clock.now_ms(), retain=retain)
        )
        readings += len(decoded.readings)
        statuses += len(decoded.statuses)
        rejections += len(decoded.rejections)
        reasons.update(r.reason for r in decoded.rejections)
    assert stats.backfilled > 0
    assert statuses == stats.statuses + stats.drops  # births, clean offlines, broker-sent wills
    assert rejections == stats.malformed
    assert len(reasons) >= 5
    # Every reading published (single or in a backfill batch) decodes.
    assert readings == sum(d.seq for d in fleet._devices.values())
