"""A real Mosquitto with the generated password file and ACL: devices publish only as themselves."""

from __future__ import annotations

import argparse
import csv
import threading
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from hub.registry.cli import devices_command
from hub.settings import MqttSettings, Settings
from tests.conftest import Names
from tests.services import Mosquitto, wait_for

pytestmark = pytest.mark.integration


class Client:
    """A paho client (MQTT 3.1.1) with username/password that records messages and SUBACKs."""

    def __init__(self, broker: Mosquitto, user: str, password: str) -> None:
        self.received: list[tuple[str, bytes]] = []
        self.connect_rc: ReasonCode | None = None
        self.granted: list[ReasonCode] = []
        self.connected = threading.Event()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{user}-c")
        self.c.username_pw_set(user, password)
        self.c.on_connect = self._on_connect
        self.c.on_subscribe = lambda _c, _u, _m, codes, _p: self.granted.extend(codes)
        self.c.on_message = lambda _c, _u, m: self.received.append((m.topic, m.payload))
        self.c.connect("127.0.0.1", broker.port, keepalive=10)
        self.c.loop_start()

    def _on_connect(self, _c: object, _u: object, _f: object, rc: ReasonCode, _p: object) -> None:
        self.connect_rc = rc
        self.connected.set()

    def publish(self, topic: str, payload: bytes) -> None:
        info = self.c.publish(topic, payload, qos=1)
        info.wait_for_publish(10)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


@pytest.fixture
def secured(tmp_path: Path, names: Names) -> Iterator[tuple[Mosquitto, dict[str, str], str]]:
    """Devices imported and credentials generated through the CLI, then Mosquitto started."""
    prefix = names.topic_prefix()
    settings = Settings(data_dir=tmp_path / "data", mqtt=MqttSettings(topic_prefix=prefix))
    devices = tmp_path / "devices.csv"
    devices.write_text(
        "id,asset_type,district\ngauge-a,flood_gauge,d01\nbridge-b,bridge,d02\n", encoding="utf-8"
    )
    assert (
        devices_command(settings, argparse.Namespace(devices_command="import", file=devices)) == 0
    )
    out = tmp_path / "creds"
    args = argparse.Namespace(devices_command="credentials", out=out, hub_user="hubsvc")
    assert devices_command(settings, args) == 0
    with (out / "credentials.csv").open() as handle:
        passwords = {row["username"]: row["password"] for row in csv.DictReader(handle)}
    broker = Mosquitto(
        tmp_path / "mosquitto",
        extra_conf=(
            "per_listener_settings false\n"
            "allow_anonymous false\n"
            f"password_file {out / 'passwd'}\n"
            f"acl_file {out / 'acl'}\n"
            # (tests.services.Mosquitto keeps the test's user when run as root, so
            # the broker can read these 0600 files.)
        ),
    )
    broker.start()
    yield broker, passwords, prefix
    broker.kill()


def test_device_publishes_only_as_itself_and_hub_reads_all(
    secured: tuple[Mosquitto, dict[str, str], str],
) -> None:
    """Own telemetry reaches the hub; another device's topic and a `#` subscription get nothing."""
    broker, passwords, prefix = secured
    hub = Client(broker, "hubsvc", passwords["hubsvc"])
    wait_for(hub.connected.is_set, what="hub connected")
    assert hub.connect_rc is not None
    assert not hub.connect_rc.is_failure
    hub.c.subscribe(f"{prefix}/#", qos=1)
    wait_for(lambda: hub.granted, what="hub SUBACK")
    assert not hub.granted[0].is_failure

    gauge = Client(broker, "gauge-a", passwords["gauge-a"])
    wait_for(gauge.connected.is_set)
    own = f"{prefix}/d01/flood_gauge/gauge-a/telemetry"
    foreign = f"{prefix}/d02/bridge/bridge-b/telemetry"
    gauge.c.subscribe("#", qos=1)
    wait_for(lambda: gauge.granted, what="device SUBACK")
    gauge.publish(foreign, b"forged")
    gauge.publish(f"{prefix}/d01/flood_gauge/gauge-a/status", b'{"state":"online"}')
    gauge.publish(own, b"first")
    # Messages from one client arrive in order: once "first" is in, "forged" never will be.
    wait_for(lambda: (own, b"first") in hub.received, what="own telemetry at the hub")
    assert (foreign, b"forged") not in hub.received
    assert (f"{prefix}/d01/flood_gauge/gauge-a/status", b'{"state":"online"}') in hub.received

    bridge = Client(broker, "bridge-b", passwords["bridge-b"])
    wait_for(bridge.connected.is_set)
    bridge.publish(foreign, b"genuine")
    wait_for(lambda: (foreign, b"genuine") in hub.received, what="bridge telemetry at the hub")
    # The `#` subscription is refused, or at least delivers nothing.
    assert gauge.granted[0].is_failure or not gauge.received
    assert gauge.received == []
    for client in (hub, gauge, bridge):
        client.close()


def test_wrong_password_and_anonymous_are_refused(
    secured: tuple[Mosquitto, dict[str, str], str],
) -> None:
    """A wrong password and a client without credentials are refused at CONNECT."""
    broker, _, _ = secured
    intruder = Client(broker, "gauge-a", "not-the-password")
    wait_for(intruder.connected.is_set, what="CONNACK")
    assert intruder.connect_rc is not None
    assert intruder.connect_rc.is_failure
    intruder.c.loop_stop()
    codes: list[ReasonCode] = []
    anonymous = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="anon")
    anonymous.on_connect = lambda _c, _u, _f, rc, _p: codes.append(rc)
    anonymous.connect("127.0.0.1", broker.port)
    anonymous.loop_start()
    wait_for(lambda: codes, what="CONNACK for the anonymous client")
    anonymous.loop_stop()
    assert codes[0].is_failure
