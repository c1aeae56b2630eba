"""The ingest session on a secured Mosquitto: user:pass in the URL, and TLS with a private CA."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
import trustme
from paho.mqtt.enums import CallbackAPIVersion

from hub.clock import SystemClock
from hub.ingest.mqtt_source import MqttSource
from hub.messages import RawMessage
from hub.settings import MqttSettings
from tests.conftest import Names
from tests.services import Mosquitto, free_port

pytestmark = pytest.mark.integration

HUB_USER = "hubsvc"
# Characters that must be percent-encoded in a URL, to prove the decoding.
HUB_PASSWORD = "p@ss:w/rd%1"
URL_PASSWORD = "p%40ss%3Aw%2Frd%251"


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Mosquitto, int, Path]]:
    """Mosquitto with no anonymous access: a password listener and a TLS listener."""
    workdir = tmp_path_factory.mktemp("mosquitto-secured")
    passwd = workdir / "passwd"
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(passwd), HUB_USER, HUB_PASSWORD],
        check=True,
        capture_output=True,
    )
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    server.private_key_and_cert_chain_pem.write_to_path(str(workdir / "server.pem"))
    ca.cert_pem.write_to_path(str(workdir / "ca.pem"))
    tls_port = free_port()
    broker = Mosquitto(
        workdir,
        extra_conf=(
            "allow_anonymous false\n"
            f"password_file {passwd}\n"
            f"listener {tls_port} 127.0.0.1\n"
            f"certfile {workdir / 'server.pem'}\n"
            f"keyfile {workdir / 'server.pem'}\n"
        ),
    )
    broker.start()
    yield broker, tls_port, workdir / "ca.pem"
    broker.kill()


def _publish(port: int, topic: str, payload: bytes) -> None:
    """One QoS 1 message from an authenticated publisher on the plain listener."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="pub-secured")
    client.username_pw_set(HUB_USER, HUB_PASSWORD)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        client.publish(topic, payload, qos=1).wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


def _source(url: str, names: Names, suffix: str, ca_file: Path | None = None) -> MqttSource:
    settings = MqttSettings(
        url=url,
        topic_prefix=names.topic_prefix(),
        client_id=f"hub-{names.slug}-{suffix}",
        reconnect_min_s=0.05,
        reconnect_max_s=0.5,
        ca_file=ca_file,
    )
    return MqttSource(settings, clock=SystemClock())


async def _one_message(source: MqttSource, broker: Mosquitto, names: Names) -> dict[str, int]:
    topic = f"{names.topic_prefix()}/d01/flood_gauge/{names.device()}/telemetry"
    _publish(broker.port, topic, json.dumps({"seq": 7}).encode())
    batch: list[RawMessage] = []
    while not batch:
        batch.extend(await source.next_batch())
    source.ack(batch)
    decoded: dict[str, int] = json.loads(batch[0].payload)
    return decoded


@pytest.mark.parametrize("tls", [False, True], ids=["password", "tls"])
async def test_a_secured_session_logs_in_and_receives(
    secured: tuple[Mosquitto, int, Path], names: Names, tls: bool
) -> None:
    """user:pass in the URL (percent-decoded) logs in; mqtts:// verifies with HUB_MQTT__CA_FILE."""
    broker, tls_port, ca = secured
    scheme, port = ("mqtts", tls_port) if tls else ("mqtt", broker.port)
    url = f"{scheme}://{HUB_USER}:{URL_PASSWORD}@127.0.0.1:{port}"
    async with _source(url, names, scheme, ca_file=ca if tls else None) as source:
        assert await source.wait_connected(10)
        assert await _one_message(source, broker, names) == {"seq": 7}


@pytest.mark.parametrize("refusal", ["wrong-password", "unknown-ca"])
async def test_a_refused_session_stays_down_without_crashing(
    secured: tuple[Mosquitto, int, Path], names: Names, refusal: str
) -> None:
    """A wrong password, or a broker certificate from an unknown CA: never connected, no crash."""
    broker, tls_port, _ca = secured
    if refusal == "wrong-password":
        url = f"mqtt://{HUB_USER}:wrong@127.0.0.1:{broker.port}"
    else:
        url = f"mqtts://{HUB_USER}:{URL_PASSWORD}@127.0.0.1:{tls_port}"
    async with _source(url, names, refusal) as source:
        assert not await source.wait_connected(2)
        assert not source.connected
