"""The broker password in HUB_MQTT__URL never leaves the hub: not on stdout, in the log,
in health, or in the errors of a broker that goes away."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest

from tests.conftest import Names
from tests.hubproc import HubProcess
from tests.services import Mosquitto, wait_for

pytestmark = pytest.mark.integration

USER = "hubsvc"
# Characters that must be percent-encoded in a URL: both forms must stay hidden.
PASSWORD = "s3cr@t:pw/x%1"
URL_PASSWORD = "s3cr%40t%3Apw%2Fx%251"


def test_broker_password_is_never_shown(tmp_path: Path, names: Names) -> None:
    """With mqtt://user:password@host in HUB_MQTT__URL, health shows mqtt://user:***@host,
    and neither form of the password appears in anything the hub prints or logs, through
    start, a lost broker, reconnection and stop (debug logging on)."""
    passwd = tmp_path / "passwd"
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(passwd), USER, PASSWORD],
        check=True,
        capture_output=True,
    )
    broker = Mosquitto(
        tmp_path / "broker", extra_conf=f"allow_anonymous false\npassword_file {passwd}\n"
    )
    broker.start()
    url = f"mqtt://{USER}:{URL_PASSWORD}@127.0.0.1:{broker.port}"
    hub = HubProcess(
        tmp_path / "hub",
        {
            "HUB_MQTT__URL": url,
            "HUB_MQTT__CLIENT_ID": f"hub-{names.topic_prefix()}",
            "HUB_LOG__LEVEL": "DEBUG",
        },
    )
    try:
        hub.start()
        shown = hub.health()["checks"]["broker"]["url"]
        assert shown == f"mqtt://{USER}:***@127.0.0.1:{broker.port}"
        broker.stop()  # the hub logs the lost broker and its reconnection attempts

        def disconnected() -> bool:
            return not httpx.get(f"{hub.url}/api/v1/health", timeout=5).json()["ready"]

        wait_for(disconnected, timeout=30, what="the hub to see the broker gone")
        broker.start()
        wait_for(lambda: hub.health()["ready"], timeout=60, what="the hub to reconnect")
        assert hub.stop() == 0
    finally:
        hub.kill()
        broker.kill()
    output = hub.log_tail(10_000_000)
    assert f"broker mqtt://{USER}:***@127.0.0.1:{broker.port}" in output  # stdout banner
    for secret in (PASSWORD, URL_PASSWORD, "s3cr"):
        assert secret not in output
