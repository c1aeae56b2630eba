"""deploy/mosquitto/production.conf runs on a real Mosquitto: TLS, passwords, ACL, persistence."""

from __future__ import annotations

import csv
import os
import shutil
import ssl
import subprocess
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from hub.registry.credentials import DeviceAccount, write_credentials
from hub.settings import load_settings
from tests.services import Mosquitto, wait_for

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def _certificates(folder: Path) -> None:
    """A throwaway CA and a server certificate for 127.0.0.1 (openssl)."""
    folder.mkdir(parents=True)

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
        "-keyout", "ca.key", "-out", "ca.crt")  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
        "-keyout", "server.key", "-out", "server.csr")  # fmt: skip
    (folder / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-out", "server.crt", "-extfile", "ext.cnf")  # fmt: skip


class ProductionMosquitto(Mosquitto):
    """Mosquitto running deploy/mosquitto/production.conf with paths moved into a temp dir."""

    def __init__(self, workdir: Path, certs: Path, creds: Path) -> None:
        super().__init__(workdir)
        self.certs, self.creds = certs, creds

    def command(self) -> list[str]:
        data = self.workdir / "data"
        data.mkdir(exist_ok=True)
        text = (REPO / "deploy/mosquitto/production.conf").read_text()
        text = (
            text.replace("listener 8883", f"listener {self.port} 127.0.0.1")
            .replace("/etc/mosquitto/certs", str(self.certs))
            .replace("/etc/mosquitto/hub", str(self.creds))
            .replace("/var/lib/mosquitto/", f"{data}/")
            .replace("log_dest syslog", "log_dest stderr")
        )
        # Tests may run as root; Mosquitto would switch to its own user otherwise.
        self.conf_path.write_text(text + "\nuser root\n")
        return [shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(self.conf_path)]


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is needed for certificates")
def test_production_conf_accepts_devices_over_tls_only_as_themselves(tmp_path: Path) -> None:
    """Over TLS with generated credentials a device's reading reaches the hub account."""
    certs, creds = tmp_path / "certs", tmp_path / "creds"
    _certificates(certs)
    write_credentials(
        creds, prefix="city", hub_user="hub", devices=[DeviceAccount("aq-1", "d01", "air_quality")]
    )
    with (creds / "credentials.csv").open() as handle:
        passwords = {r["username"]: r["password"] for r in csv.DictReader(handle)}
    broker = ProductionMosquitto(tmp_path / "broker", certs, creds)
    broker.start()
    try:
        received: list[bytes] = []
        subscribed = threading.Event()

        def client(user: str) -> mqtt.Client:
            c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{user}-tls")
            c.tls_set(ca_certs=str(certs / "ca.crt"), cert_reqs=ssl.CERT_REQUIRED)
            c.username_pw_set(user, passwords[user])
            return c

        hub = client("hub")
        hub.on_connect = lambda c, *_: c.subscribe("city/#", qos=1)
        hub.on_subscribe = lambda *_: subscribed.set()
        hub.on_message = lambda _c, _u, m: received.append(m.payload)
        hub.connect("127.0.0.1", broker.port)
        hub.loop_start()
        wait_for(subscribed.is_set, what="hub subscribed over TLS")
        device = client("aq-1")
        device.connect("127.0.0.1", broker.port)
        device.loop_start()
        device.publish("city/d02/air_quality/aq-1/telemetry", b"wrong district", qos=1)
        device.publish("city/d01/air_quality/aq-1/telemetry", b"ok", qos=1).wait_for_publish(10)
        wait_for(lambda: b"ok" in received, what="device reading at the hub")
        assert b"wrong district" not in received
        for c in (hub, device):
            c.disconnect()
            c.loop_stop()
    finally:
        broker.stop()
    # A client that closes its socket without a TLS close_notify makes OpenSSL log an
    # "unexpected eof": harmless, and a matter of timing. Any other error is a finding.
    errors = [
        line
        for line in broker.log_tail().splitlines()
        if "Error" in line and "unexpected eof while reading" not in line
    ]
    assert errors == [], broker.log_tail()


def test_production_settings_file_loads_and_rejects_unknown_devices(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """deploy/hub.production.yaml is a valid --config file that rejects unknown devices."""
    for name in os.environ:
        if name.startswith("HUB_"):
            monkeypatch.delenv(name)
    settings = load_settings(REPO / "deploy/hub.production.yaml")
    assert settings.ingest.unknown_devices == "reject"
    assert settings.store.backend == "influxdb"
    assert not settings.mqtt.embedded
    assert settings.mqtt.url.startswith("mqtts://")
