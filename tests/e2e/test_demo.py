"""`hub demo` as a newcomer runs it: a subprocess on a temp data dir and free ports.

Within 90 s the API, with the printed admin key, lists devices of every asset type
of the catalog and the scenario's alerts (flood area emergency in d03, the burst
main, the gas leak); SIGINT stops it cleanly (exit 0); a restart keeps the data.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from devices.simulator import build_fleet
from hub.catalog import load_catalog
from tests.services import env_without_hub, free_port, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
DEADLINE_S = 90.0


class Demo:
    """A `hub demo` child process whose output is read as it comes."""

    def __init__(self, data_dir: Path, mqtt_port: int, api_port: int, **settings: str) -> None:
        env = env_without_hub()
        env.update(
            HUB_DATA_DIR=str(data_dir),
            HUB_MQTT__EMBEDDED_LISTEN=f"127.0.0.1:{mqtt_port}",
            HUB_API__PORT=str(api_port),
            HUB_LOG__LEVEL="WARNING",
            PYTHONUNBUFFERED="1",
        )
        env.update(settings)
        self.api = f"http://127.0.0.1:{api_port}"
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hub", "demo"],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def output(self) -> str:
        return "\n".join(self.lines[-80:])

    def key(self, timeout: float) -> str:
        def printed() -> str | None:
            if self.proc.poll() is not None:
                raise RuntimeError(f"hub demo exited {self.proc.returncode}:\n{self.output()}")
            for line in self.lines:
                if "admin key" in line:
                    return line.split()[-1]
            return None

        key = wait_for(printed, timeout=timeout, interval=0.2, what="the admin key")
        assert isinstance(key, str)
        return key

    def get(self, key: str, path: str, **params: Any) -> Any:
        response = httpx.get(
            f"{self.api}/api/v1{path}",
            params=params,
            headers={"Authorization": f"Bearer {key}"},
            timeout=10,
        )
        response.raise_for_status()
        return response.json()

    def interrupt(self, timeout: float = 45.0) -> int:
        self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            stacks = self._stacks()
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(
                f"hub demo did not stop on SIGINT:\n{self.output()}\n{stacks}"
            ) from None

    def _stacks(self) -> str:
        """Where a hung demo is stuck (py-spy, a dev dependency), for the failure message."""
        spy = shutil.which("py-spy")
        if spy is None:
            return ""
        dump = subprocess.run(
            [spy, "dump", "--pid", str(self.proc.pid)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        return dump.stdout + dump.stderr

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _scenario_alerts_seen(alerts: list[dict[str, Any]]) -> dict[str, bool]:
    return {
        "flood area emergency in d03": any(
            a["district"] == "d03" and a["source"] == "_area" and a["severity"] == "emergency"
            for a in alerts
        ),
        "burst main wm-d02-001": any(a["source"] == "wm-d02-001" for a in alerts),
        "gas leak mh-d05-002": any(a["source"] == "mh-d05-002" for a in alerts),
    }


def _shows_fleet_and_scenario(demo: Demo, started: float) -> str:
    """Within DEADLINE_S of ``started``: every asset type reporting, the scenario's alerts,
    the fleet provisioned, nothing dead-lettered. Returns the admin key."""
    asset_types = set(load_catalog().asset_types())
    key = demo.key(timeout=DEADLINE_S)
    assert f"console    {demo.api}/" in demo.output()

    def fleet_reporting() -> bool:
        devices = demo.get(key, "/devices", limit=1000)
        seen = {d["asset_type"] for d in devices if d["last_seen_ms"]}
        return len(devices) >= 300 and seen == asset_types

    wait_for(fleet_reporting, timeout=DEADLINE_S - (time.monotonic() - started), interval=1)

    def scenario_alerts() -> bool:
        return all(_scenario_alerts_seen(demo.get(key, "/alerts", limit=1000)).values())

    try:
        wait_for(
            scenario_alerts,
            timeout=max(1.0, DEADLINE_S - (time.monotonic() - started)),
            interval=1,
        )
    except TimeoutError:
        seen = _scenario_alerts_seen(demo.get(key, "/alerts", limit=1000))
        raise AssertionError(f"scenario alerts after {DEADLINE_S:.0f} s: {seen}") from None
    # Provisioned with the fleet's locations.
    spec = next(s for s in build_fleet(320, 8) if s.device_id == "fg-d03-001")
    detail = demo.get(key, "/devices/fg-d03-001")
    assert detail["provisioned"] is True
    assert detail["latitude"] == pytest.approx(spec.latitude)
    assert detail["longitude"] == pytest.approx(spec.longitude)
    # Everything the simulated fleet sent (births, wills, readings) was accepted.
    health = httpx.get(f"{demo.api}/api/v1/health", timeout=10).json()
    assert health["checks"]["dead_letters"] == {}
    return key


def _mosquitto_children(pid: int) -> list[str]:
    return [
        " ".join(child.cmdline())
        for child in psutil.Process(pid).children(recursive=True)
        if "mosquitto" in child.name()
    ]


def test_demo_shows_fleet_and_alerts_stops_cleanly_and_keeps_data(tmp_path: Path) -> None:
    """hub demo: devices of every type and the scenario's alerts in 90 s; SIGINT -> 0; data kept."""
    asset_types = set(load_catalog().asset_types())
    data_dir = tmp_path / "var"
    started = time.monotonic()
    demo = Demo(data_dir, free_port(), free_port())
    try:
        key = _shows_fleet_and_scenario(demo, started)
        first_alerts = {a["id"] for a in demo.get(key, "/alerts", limit=1000)}
        assert demo.interrupt() == 0, demo.output()
        assert "stopped" in demo.output()
    finally:
        demo.kill()

    # Second start on the same data: the devices and the alerts are still there.
    again = Demo(data_dir, free_port(), free_port())
    try:
        key2 = again.key(timeout=DEADLINE_S)
        assert key2 != key
        devices = again.get(key2, "/devices", limit=1000)
        assert len(devices) >= 300
        assert {d["asset_type"] for d in devices} == asset_types
        kept = {a["id"] for a in again.get(key2, "/alerts", limit=1000)}
        assert first_alerts <= kept
        with pytest.raises(httpx.HTTPStatusError):  # the first run's demo key was revoked
            again.get(key, "/devices")
        assert again.interrupt() == 0, again.output()
    finally:
        again.kill()
    assert (data_dir / "hub.db").exists()


def test_demo_without_mosquitto_runs_on_the_in_process_broker(tmp_path: Path) -> None:
    """hub demo on the in-process amqtt broker: fleet and alerts in 90 s; SIGINT -> 0."""
    started = time.monotonic()
    # What `auto` picks when no mosquitto binary is installed; forced here because
    # this machine has one (hiding it from PATH would not: /usr/sbin is probed too).
    demo = Demo(tmp_path / "var", free_port(), free_port(), HUB_MQTT__EMBEDDED_BROKER="amqtt")
    try:
        _shows_fleet_and_scenario(demo, started)
        assert _mosquitto_children(demo.proc.pid) == []
        assert demo.interrupt() == 0, demo.output()
        assert "stopped" in demo.output()
    finally:
        demo.kill()
