"""The embedded broker (Mosquitto child and in-process amqtt): QoS 1 sessions, retained, will."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from hub.broker import BrokerStartError, EmbeddedBroker, PortInUse
from hub.broker import embedded as embedded_module
from hub.settings import MqttSettings
from tests.services import free_port

pytestmark = pytest.mark.integration

BACKENDS = ["mosquitto", "amqtt"]


async def until(condition: Callable[[], object], within: float = 15.0, what: str = "") -> None:
    """Wait for ``condition`` without blocking the loop (the amqtt broker runs on it)."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what or condition!r}")
        await asyncio.sleep(0.02)


class Client:
    """A paho client on its own thread that records what it receives."""

    def __init__(
        self,
        url: str,
        client_id: str,
        *,
        clean: bool = True,
        will: tuple[str, bytes] | None = None,
    ) -> None:
        host, port = url.removeprefix("mqtt://").rsplit(":", 1)
        self.received: list[tuple[str, bytes, bool]] = []
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=clean,
            protocol=mqtt.MQTTv311,
        )
        if will:
            self.c.will_set(will[0], will[1], qos=1, retain=True)
        self.c.on_connect = lambda *_: self.connected.set()
        self.c.on_subscribe = lambda *_: self.subscribed.set()
        self.c.on_message = lambda _c, _u, m: self.received.append((m.topic, m.payload, m.retain))
        self.c.connect(host, int(port), keepalive=5)
        self.c.loop_start()

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()

    def drop(self) -> None:
        """Lose the connection abruptly (no DISCONNECT): the broker sends the will."""
        sock = self.c.socket()
        assert sock is not None
        sock.shutdown(socket.SHUT_RDWR)
        self.c.loop_stop()


@pytest.fixture(params=BACKENDS)
async def broker(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[EmbeddedBroker]:
    settings = MqttSettings(embedded_listen=f"127.0.0.1:{free_port()}")
    async with EmbeddedBroker(settings, tmp_path, backend=request.param) as b:
        yield b


async def test_qos1_persistent_session_survives_client_reconnect(broker: EmbeddedBroker) -> None:
    """Messages published while a persistent-session subscriber is away are delivered later."""
    sub = Client(broker.url, "hub-test", clean=False)
    await until(sub.connected.is_set, what="subscriber connected")
    sub.c.subscribe("city/+/+/+/telemetry", qos=1)
    await until(sub.subscribed.is_set, what="subscribed")
    sub.close()
    pub = Client(broker.url, "pub-1")
    await until(pub.connected.is_set)
    infos = [pub.c.publish(f"city/d01/bridge/b{i}/telemetry", b"%d" % i, qos=1) for i in range(50)]
    await until(lambda: all(i.is_published() for i in infos), what="published")
    pub.close()
    back = Client(broker.url, "hub-test", clean=False)
    await until(lambda: len(back.received) >= 50, what="queued messages after reconnect")
    assert sorted(int(p) for _, p, _ in back.received) == list(range(50))
    back.close()


async def test_retained_status_reaches_a_late_subscriber(broker: EmbeddedBroker) -> None:
    """A retained birth is delivered to a subscriber that arrives afterwards."""
    pub = Client(broker.url, "dev-1")
    await until(pub.connected.is_set)
    info = pub.c.publish("city/d01/bridge/b1/status", b'{"state":"online"}', qos=1, retain=True)
    await until(info.is_published)
    pub.close()
    sub = Client(broker.url, "late")
    await until(sub.connected.is_set)
    sub.c.subscribe("city/+/+/+/status", qos=1)
    await until(lambda: sub.received, what="retained status")
    assert sub.received[0] == ("city/d01/bridge/b1/status", b'{"state":"online"}', True)
    sub.close()


async def test_last_will_is_published_when_a_device_drops(broker: EmbeddedBroker) -> None:
    """An abrupt disconnect makes the broker publish the device's last will."""
    sub = Client(broker.url, "watcher")
    await until(sub.connected.is_set)
    sub.c.subscribe("city/d02/manhole/m1/status", qos=1)
    await until(sub.subscribed.is_set)
    dev = Client(broker.url, "m1", will=("city/d02/manhole/m1/status", b'{"state":"offline"}'))
    await until(dev.connected.is_set)
    dev.drop()
    await until(lambda: sub.received, what="last will")
    assert sub.received[0][1] == b'{"state":"offline"}'
    sub.close()


@pytest.mark.parametrize("backend", BACKENDS)
async def test_port_in_use_names_both_settings(backend: str, tmp_path: Path) -> None:
    """A taken port is a clear error naming HUB_MQTT__EMBEDDED_LISTEN and HUB_MQTT__URL."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = MqttSettings(embedded_listen=f"127.0.0.1:{port}")
        with pytest.raises(PortInUse) as caught:
            async with EmbeddedBroker(settings, tmp_path, backend=backend):  # type: ignore[arg-type]
                pass
    message = str(caught.value)
    assert "HUB_MQTT__EMBEDDED_LISTEN" in message
    assert "HUB_MQTT__URL" in message
    assert f"127.0.0.1:{port}" in message


async def test_child_failing_to_bind_is_detected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the port is taken between the check and Mosquitto's bind, the child's failure says so."""
    monkeypatch.setattr(embedded_module, "_check_free", lambda *_: None)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        settings = MqttSettings(embedded_listen=f"127.0.0.1:{taken.getsockname()[1]}")
        with pytest.raises(PortInUse, match="HUB_MQTT__URL"):
            async with EmbeddedBroker(settings, tmp_path, backend="mosquitto"):
                pass


async def test_mosquitto_starts_on_a_relative_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A data dir relative to the working directory (the default ./var) works: Mosquitto runs
    in its own folder, so its config and persistence paths are absolute."""
    monkeypatch.chdir(tmp_path)
    settings = MqttSettings(embedded_listen="127.0.0.1:0")
    async with EmbeddedBroker(settings, Path("var"), backend="mosquitto") as b:
        client = Client(b.url, "relative")
        await until(client.connected.is_set, what="a client connected")
        client.close()
        conf = (tmp_path / "var" / "broker" / "mosquitto.conf").read_text()
    assert f"persistence_location {tmp_path}/var/broker/" in conf
    assert (tmp_path / "var" / "broker" / "mosquitto.db").exists()


async def test_no_broker_at_all_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without Mosquitto and without the amqtt package, the error says what to install
    or set, instead of an ImportError."""
    monkeypatch.setitem(sys.modules, "amqtt.broker", None)  # import fails as if not installed
    settings = MqttSettings(embedded_listen="127.0.0.1:0")
    with pytest.raises(BrokerStartError, match="Install Mosquitto") as caught:
        async with EmbeddedBroker(settings, tmp_path, backend="amqtt"):
            pass
    assert "HUB_MQTT__URL" in str(caught.value)


async def test_mosquitto_keeps_queued_messages_across_its_restart(tmp_path: Path) -> None:
    """Persistence under data_dir/broker: a session's queue survives a broker stop and start."""
    settings = MqttSettings(embedded_listen=f"127.0.0.1:{free_port()}")
    async with EmbeddedBroker(settings, tmp_path, backend="mosquitto") as b:
        sub = Client(b.url, "hub-persist", clean=False)
        await until(sub.connected.is_set)
        sub.c.subscribe("city/#", qos=1)
        await until(sub.subscribed.is_set)
        sub.close()
        pub = Client(b.url, "p")
        await until(pub.connected.is_set)
        info = pub.c.publish("city/d01/bridge/b9/telemetry", b"kept", qos=1)
        await until(info.is_published)
        pub.close()
    assert (tmp_path / "broker" / "mosquitto.db").exists()
    async with EmbeddedBroker(settings, tmp_path, backend="mosquitto") as b:
        back = Client(b.url, "hub-persist", clean=False)
        await until(lambda: back.received, what="message kept across the restart")
        assert back.received[0][1] == b"kept"
        back.close()


def test_mosquitto_child_dies_when_the_hub_is_killed(tmp_path: Path) -> None:
    """SIGKILL of the process owning the broker takes the Mosquitto child with it."""
    script = (
        "import asyncio, sys\n"
        "from pathlib import Path\n"
        "from hub.broker import EmbeddedBroker\n"
        "from hub.settings import MqttSettings\n"
        "async def main():\n"
        f"    s = MqttSettings(embedded_listen='127.0.0.1:{free_port()}')\n"
        f"    async with EmbeddedBroker(s, Path({str(tmp_path)!r}), backend='mosquitto') as b:\n"
        "        print('PID', b.pid, flush=True)\n"
        "        await asyncio.sleep(3600)\n"
        "asyncio.run(main())\n"
    )
    owner = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert owner.stdout is not None
        line = b""
        while not line.startswith(b"PID "):
            line = owner.stdout.readline()
            assert line, "the owner process exited before starting the broker"
        child = int(line.split()[1])
        os.kill(child, 0)  # alive
        owner.send_signal(signal.SIGKILL)
        owner.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if not _alive(child):
                break
            time.sleep(0.05)  # polling a pid with a deadline, not synchronising
        else:
            os.kill(child, signal.SIGKILL)
            pytest.fail("the Mosquitto child outlived the killed hub")
    finally:
        if owner.poll() is None:
            owner.kill()


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for its reaper counts as dead)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


async def test_non_loopback_listen_needs_credentials(tmp_path: Path) -> None:
    """Listening beyond loopback without a password file is refused with the command to fix it."""
    settings = MqttSettings(embedded_listen=f"0.0.0.0:{free_port()}")
    with pytest.raises(OSError, match="hub devices credentials"):
        async with EmbeddedBroker(settings, tmp_path, backend="mosquitto"):
            pass


async def test_amqtt_queues_readings_for_the_hub_before_its_session_connects(
    tmp_path: Path,
) -> None:
    """The hub's session exists from the broker's start: devices' early readings wait for it."""
    settings = MqttSettings(
        embedded_listen=f"127.0.0.1:{free_port()}", client_id="hub-early", topic_prefix="city"
    )
    async with EmbeddedBroker(settings, tmp_path, backend="amqtt") as b:
        dev = Client(b.url, "early-device")
        await until(dev.connected.is_set)
        infos = [dev.c.publish("city/d01/bridge/b7/telemetry", b"%d" % i, qos=1) for i in range(20)]
        await until(lambda: all(i.is_published() for i in infos), what="published")
        dev.close()
        hub = Client(b.url, "hub-early", clean=False)
        await until(lambda: len(hub.received) >= 20, what="readings sent before the hub came")
        assert [int(p) for _, p, _ in hub.received] == list(range(20))
        hub.close()


async def test_alert_notifier_publishes_event_and_retained_state_through_amqtt(
    tmp_path: Path,
) -> None:
    """The MQTT alert notifier (aiomqtt, MQTT 3.1.1) works on amqtt: event and retained state."""
    from hub.clock import SystemClock
    from hub.messages import Notification
    from hub.notifiers.mqtt import MqttNotifier

    settings = MqttSettings(embedded_listen=f"127.0.0.1:{free_port()}")
    async with EmbeddedBroker(settings, tmp_path, backend="amqtt") as b:
        watcher = Client(b.url, "board")
        await until(watcher.connected.is_set)
        watcher.c.subscribe("city/alerts/d02/#", qos=1)
        await until(watcher.subscribed.is_set)
        notifier = MqttNotifier("mqtt", b.url, "city", clock=SystemClock(), client_id="alerts")
        alert = {"id": "a1", "status": "firing", "district": "d02", "source": "wm-d02-001"}
        state = {"state": "alert", "severity": "critical", "alerts": ["a1"]}
        await notifier.send(
            Notification("n1", "mqtt", "a1", {"alert": alert, "source_state": state}, 0)
        )
        await notifier.close()
        await until(lambda: len(watcher.received) >= 2, what="event and state")
        topics = {t for t, _, _ in watcher.received}
        assert topics == {"city/alerts/d02/wm-d02-001", "city/alerts/d02/wm-d02-001/state"}
        watcher.close()
        late = Client(b.url, "late-board")
        await until(late.connected.is_set)
        late.c.subscribe("city/alerts/d02/+/state", qos=1)
        await until(lambda: late.received, what="retained state")
        assert late.received[0][2] is True
        assert b'"alert"' in late.received[0][1]
        late.close()
