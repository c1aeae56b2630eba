"""`hub run` on its embedded broker (each backend): readings, status, last will, restart."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.conftest import Names
from tests.hubproc import HubProcess, Publisher
from tests.services import free_port, wait_for

pytestmark = pytest.mark.integration


def _now_ms() -> int:
    return int(time.time() * 1000)


@pytest.mark.parametrize("backend", ["mosquitto", "amqtt"])
def test_hub_on_embedded_broker_tracks_readings_status_and_will(
    backend: str, tmp_path: Path, names: Names
) -> None:
    """Readings, a retained birth and a last will through the embedded broker reach the registry."""
    port = free_port()
    hub = HubProcess(
        tmp_path / "hub",
        {
            "HUB_MQTT__URL": "",
            "HUB_MQTT__EMBEDDED_LISTEN": f"127.0.0.1:{port}",
            "HUB_MQTT__EMBEDDED_BROKER": backend,
        },
    )
    try:
        hub.start(timeout=20)
        wait_for(lambda: hub.health()["checks"]["broker"]["connected"], timeout=15)
        url = f"mqtt://127.0.0.1:{port}"
        device = names.device(1)
        base = f"city/d03/manhole/{device}"
        connected = threading.Event()
        dev = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=device)
        dev.will_set(f"{base}/status", json.dumps({"state": "offline"}), qos=1, retain=True)
        dev.on_connect = lambda *_: connected.set()
        dev.connect("127.0.0.1", port)
        dev.loop_start()
        wait_for(connected.is_set, what="device connected")
        dev.publish(f"{base}/status", json.dumps({"state": "online"}), qos=1, retain=True)
        pub = Publisher(url)
        for seq in range(20):
            pub.publish(
                f"{base}/telemetry",
                {"ts": _now_ms() - 20 + seq, "seq": seq, "metrics": {"h2s_ppm": float(seq)}},
            )
        pub.wait_all()
        pub.close()

        def seen() -> bool:
            info = hub.get(f"/api/v1/devices/{device}")
            return bool(info["status"] == "online" and info["latest"].get("h2s_ppm") == 19.0)

        wait_for(seen, timeout=30, what="device online with its latest reading")
        info = hub.get(f"/api/v1/devices/{device}")
        assert (info["seq_gaps"], info["seq_duplicates"]) == (0, 0)
        sock = dev.socket()
        assert sock is not None
        sock.shutdown(socket.SHUT_RDWR)  # lost connection: the broker sends the will
        dev.loop_stop()
        wait_for(
            lambda: hub.get(f"/api/v1/devices/{device}")["status"] == "offline",
            timeout=30,
            what="last will marks the device offline",
        )
    finally:
        assert hub.stop() == 0, hub.log_tail()
    assert f"backend={backend}" in hub.log_tail(100_000)


def test_hub_killed_then_restarted_on_the_same_embedded_port(tmp_path: Path, names: Names) -> None:
    """After SIGKILL of the hub its Mosquitto child is gone, so a restart binds the port again."""
    port = free_port()
    env = {"HUB_MQTT__URL": "", "HUB_MQTT__EMBEDDED_LISTEN": f"127.0.0.1:{port}"}
    hub = HubProcess(tmp_path / "hub", env)
    device = names.device(2)
    topic = f"city/d04/bridge/{device}/telemetry"
    try:
        hub.start()
        wait_for(lambda: hub.health()["checks"]["broker"]["connected"], timeout=30)
        pub = Publisher(f"mqtt://127.0.0.1:{port}")
        pub.publish(topic, {"ts": _now_ms(), "seq": 0, "metrics": {"strain_ue": 1.0}})
        pub.wait_all()
        pub.close()
        wait_for(lambda: hub.get(f"/api/v1/devices/{device}")["latest"], timeout=30)
        hub.kill()
        # The child must have gone with the hub, or the restart could not bind.
        hub.start()
        wait_for(lambda: hub.health()["checks"]["broker"]["connected"], timeout=30)
        pub = Publisher(f"mqtt://127.0.0.1:{port}")
        pub.publish(topic, {"ts": _now_ms(), "seq": 1, "metrics": {"strain_ue": 2.0}})
        pub.wait_all()
        pub.close()
        wait_for(
            lambda: hub.get(f"/api/v1/devices/{device}")["latest"].get("strain_ue") == 2.0,
            timeout=30,
            what="reading after the restart",
        )
    finally:
        assert hub.stop() == 0, hub.log_tail()


def test_readings_queued_in_embedded_mosquitto_survive_a_hub_kill(
    tmp_path: Path, names: Names
) -> None:
    """Readings the broker accepted but the hub had not journaled arrive after SIGKILL + restart."""
    port = free_port()
    env = {"HUB_MQTT__URL": "", "HUB_MQTT__EMBEDDED_LISTEN": f"127.0.0.1:{port}"}
    hub = HubProcess(tmp_path / "hub", env)
    device = names.device(3)
    topic = f"city/d05/traffic_counter/{device}/telemetry"
    total = 3000
    try:
        hub.start()
        wait_for(lambda: hub.health()["checks"]["broker"]["connected"], timeout=30)
        pub = Publisher(f"mqtt://127.0.0.1:{port}")
        base = _now_ms() - total
        for seq in range(total):
            pub.publish(
                topic,
                {"ts": base + seq, "seq": seq, "metrics": {"vehicles_per_min": float(seq)}},
            )
        pub.wait_all()  # every reading is the broker's responsibility now
        hub.kill()  # the Mosquitto child gets SIGTERM and saves its queue
        pub.close()
        hub.start()

        def complete() -> bool:
            info = hub.get(f"/api/v1/devices/{device}")
            return bool(info["latest"].get("vehicles_per_min") == float(total - 1))

        wait_for(complete, timeout=60, what="the last reading after the restart")
        info = hub.get(f"/api/v1/devices/{device}")
        assert info["seq_gaps"] == 0, info
    finally:
        assert hub.stop() == 0, hub.log_tail()
