"""Ingest slots against a real Mosquitto and nats-server: the broker keeps queuing for a
dead member of a shared subscription, and a surviving worker takes the dead one's slot,
resumes its session and drains what was queued: nothing lost."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import paho.mqtt.client as paho
import pytest
from nats.aio.client import Client
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.properties import Properties

from hub.clock import SystemClock
from hub.cluster.leases import Leases
from hub.cluster.pool import LeasePool, Membership
from hub.cluster.slots import IngestSlots, slot_client_id, slot_names
from hub.ingest.mqtt_source import shared_subscriptions
from hub.ingest.topics import subscriptions
from hub.messages import RawMessage
from hub.settings import MqttSettings
from tests.conftest import Names
from tests.services import Mosquitto, NatsServer, env_without_hub, wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
TTL = 1.0


class Publisher:
    """A QoS 1 publisher on its own network thread."""

    def __init__(self, broker: Mosquitto, client_id: str) -> None:
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        connected = threading.Event()
        self.client.on_connect = lambda *_a: connected.set()
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        assert connected.wait(10)
        self.infos: list[paho.MQTTMessageInfo] = []

    def publish(self, names: Names, seqs: range) -> None:
        for seq in seqs:
            device = names.device(seq % 7)
            topic = f"{names.topic_prefix()}/d01/flood_gauge/{device}/telemetry"
            self.infos.append(self.client.publish(topic, json.dumps({"seq": seq}), qos=1))
        wait_for(lambda: all(i.is_published() for i in self.infos), what="pubacks")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def publisher(own_mosquitto: Mosquitto, names: Names) -> Iterator[Publisher]:
    """A publisher on the test's own broker."""
    pub = Publisher(own_mosquitto, f"pub-{names.slug}")
    yield pub
    pub.close()


@pytest.fixture
async def client(nats_server: NatsServer) -> AsyncIterator[Client]:
    """A NATS connection to the session's server."""
    nc = await nats.connect([nats_server.url])
    yield nc
    await nc.close()


def _slot_worker(
    nats_url: str, mqtt_url: str, bucket: str, prefix: str, out: Path, client_id: str
) -> subprocess.Popen[bytes]:
    """Worker "a" (tests/integration/cluster/slot_worker.py) in a process of its own."""
    args = {
        "nats": nats_url,
        "mqtt": mqtt_url,
        "bucket": bucket,
        "prefix": prefix,
        "out": str(out),
        "worker": "a",
        "client-id": client_id,
        "ttl": str(TTL),
    }
    command = [sys.executable, "-m", "tests.integration.cluster.slot_worker"]
    for name, value in args.items():
        command += [f"--{name}", value]
    with out.with_suffix(".log").open("wb") as log:
        return subprocess.Popen(
            command,
            cwd=ROOT,
            env=env_without_hub() | {"PYTHONPATH": str(ROOT)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def _holding(proc: subprocess.Popen[bytes], out: Path) -> str:
    """The first slot the worker says it holds (the rest of its output is its log)."""

    def said() -> str:
        if proc.poll() is not None:
            raise AssertionError(f"the slot worker ended: {out.with_suffix('.log').read_text()}")
        for line in out.with_suffix(".log").read_text().splitlines():
            if line.startswith("holding "):
                return line.split()[-1]
        return ""

    return str(wait_for(said, timeout=20, what="worker a to take a slot"))


def _seqs(lines: list[bytes]) -> set[int]:
    return {int(json.loads(line)["seq"]) for line in lines if line.strip()}


_MEMBER = """
import sys, threading, time
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes
port, client_id, topic = int(sys.argv[1]), sys.argv[2], sys.argv[3]
v5 = MQTTProtocolVersion.MQTTv5
c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=v5)
props = Properties(PacketTypes.CONNECT); props.SessionExpiryInterval = 3600
subscribed = threading.Event()
c.on_subscribe = lambda *a: subscribed.set()
c.on_connect = lambda cl, *a: cl.subscribe(topic, qos=1)
c.on_message = lambda *a: None  # received and acknowledged: the broker sends more
c.connect("127.0.0.1", port, clean_start=False, properties=props)
c.loop_start()
subscribed.wait(10)
print("subscribed", flush=True)
time.sleep(3600)
"""


def _member(broker: Mosquitto, client_id: str, topic: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _MEMBER, str(broker.port), client_id, topic],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "subscribed"
    return proc


def _session(broker: Mosquitto, client_id: str, topic: str) -> tuple[paho.Client, list[bytes]]:
    """A persistent MQTT 5 session that collects what it receives."""
    got: list[bytes] = []
    lock = threading.Lock()
    client = paho.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5
    )

    def on_message(_c: object, _u: object, msg: paho.MQTTMessage) -> None:
        with lock:
            got.append(msg.payload)

    subscribed = threading.Event()
    client.on_message = on_message
    client.on_subscribe = lambda *_a: subscribed.set()
    client.on_connect = lambda cl, *_a: cl.subscribe(topic, qos=1)
    props = Properties(paho.PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 3600
    client.connect("127.0.0.1", broker.port, clean_start=False, properties=props)
    client.loop_start()
    assert subscribed.wait(10)
    return client, got


def test_mosquitto_queues_for_a_dead_shared_member(
    own_mosquitto: Mosquitto, publisher: Publisher, names: Names
) -> None:
    """A member of a shared subscription killed (no DISCONNECT) still gets its share
    queued by Mosquitto; a session resuming its client id receives it."""
    (topic,) = shared_subscriptions([f"{names.topic_prefix()}/+/+/+/telemetry"], "g")
    dead = _member(own_mosquitto, f"{names.slug}-a", topic)
    alive, got_alive = _session(own_mosquitto, f"{names.slug}-b", topic)
    try:
        dead.send_signal(signal.SIGKILL)
        dead.wait()
        publisher.publish(names, range(100))
        wait_for(lambda: len(got_alive) >= 1, what="the live member's share")
        resumed, got_resumed = _session(own_mosquitto, f"{names.slug}-a", topic)
        try:
            wait_for(
                lambda: _seqs(got_alive) | _seqs(got_resumed) == set(range(100)),
                what="the dead member's queued share",
            )
            assert got_resumed, "the broker queued nothing for the dead member"
            assert not _seqs(got_alive) & _seqs(got_resumed)
        finally:
            resumed.disconnect()
            resumed.loop_stop()
    finally:
        alive.disconnect()
        alive.loop_stop()
        if dead.poll() is None:
            dead.kill()


async def test_a_survivor_takes_a_killed_workers_slot_and_drains_it(
    own_mosquitto: Mosquitto,
    nats_server: NatsServer,
    client: Client,
    publisher: Publisher,
    names: Names,
    tmp_path: Path,
) -> None:
    """Two ingest workers hold one of two slots each; one is SIGKILLed mid-stream; the
    other takes its slot within the lease TTL, connects with its client id, and receives
    everything the broker queued for it: every published message was received by one of
    the two (and the killed one acknowledged only what it had written)."""
    prefix = names.topic_prefix()
    bucket = names.stream()
    base_id = f"hub-{names.slug}"
    out = tmp_path / "worker-a.out"
    worker_a = _slot_worker(nats_server.url, own_mosquitto.url, bucket, prefix, out, base_id)
    clock = SystemClock()
    leases = Leases(client, worker_id="b", ttl_s=TTL, replicas=1, clock=clock, bucket=bucket)
    await leases.open()
    mqtt = MqttSettings(
        url=own_mosquitto.url, topic_prefix=prefix, client_id=base_id, reconnect_min_s=0.05
    )
    slots = IngestSlots(mqtt, clock=clock, subscriptions=subscriptions(prefix), group="g")
    membership = Membership(leases, ["ingest"])
    pool = LeasePool(
        membership,
        slot_names(2),
        role="ingest",
        on_acquired=slots.on_acquired,
        on_lost=slots.on_lost,
        on_release=slots.on_release,
    )
    received: list[RawMessage] = []

    async def consume() -> None:
        while True:
            batch = await slots.next_batch()
            received.extend(batch)
            slots.ack(batch)

    tasks = [asyncio.create_task(t) for t in (membership.run(), pool.run(), consume())]
    try:
        a_slot = await asyncio.to_thread(_holding, worker_a, out)
        deadline = time.monotonic() + 20
        while len(slots.held) != 1:
            assert time.monotonic() < deadline, f"b holds {slots.held}"
            await asyncio.sleep(0.05)
        assert slots.held != [a_slot]
        await asyncio.to_thread(publisher.publish, names, range(200))

        def written() -> list[bytes]:
            return out.read_bytes().splitlines() if out.exists() else []

        while not written() or not received:
            assert time.monotonic() < deadline, "both workers should receive a share"
            await asyncio.sleep(0.05)
        worker_a.send_signal(signal.SIGKILL)
        worker_a.wait()
        killed_at = time.monotonic()
        await asyncio.to_thread(publisher.publish, names, range(200, 400))
        while len(slots.held) != 2:
            assert time.monotonic() - killed_at < 2 * TTL + 1, "slot not taken over"
            await asyncio.sleep(0.02)
        assert slots.client_ids()[a_slot] == slot_client_id(base_id, int(a_slot[-1]))
        while _seqs(written()) | _seqs([m.payload for m in received]) != set(range(400)):
            missing = set(range(400)) - _seqs(written()) - _seqs([m.payload for m in received])
            assert time.monotonic() - killed_at < 20, f"lost: {sorted(missing)[:20]}"
            await asyncio.sleep(0.05)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await slots.aclose()
        if worker_a.poll() is None:
            worker_a.kill()
