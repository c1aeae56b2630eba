"""`hub demo` as a newcomer runs it: a subprocess on a temp data dir and free ports.

Within 90 s the API, with the printed admin key, lists devices of every asset type
of the catalog and the scenario's alerts (flood area emergency in d03, the burst
main, the gas leak); SIGINT stops it cleanly (exit 0); a restart keeps the data.
Started from an empty folder with no HUB_* setting at all, it does the same, on the
rule packs shipped with the hub and on the next free ports if the default ones are
taken; ports the test takes itself are moved away from, and said so.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
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
    """A `hub demo` child process whose output is read as it comes.

    With ``data_dir`` and the ports None, no HUB_* variable is set at all: the demo runs
    on its defaults from ``cwd``, exactly as a newcomer's first command.
    """

    def __init__(
        self,
        data_dir: Path | None,
        mqtt_port: int | None,
        api_port: int | None,
        *,
        cwd: Path = REPO,
        **settings: str,
    ) -> None:
        env = env_without_hub()
        # This checkout's code, from whatever folder the demo is started in.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        env["PYTHONUNBUFFERED"] = "1"
        if data_dir is not None:
            env["HUB_DATA_DIR"] = str(data_dir)
        if mqtt_port is not None:
            env["HUB_MQTT__EMBEDDED_LISTEN"] = f"127.0.0.1:{mqtt_port}"
        if api_port is not None:
            env["HUB_API__PORT"] = str(api_port)
        if data_dir is not None or settings:
            env["HUB_LOG__LEVEL"] = "WARNING"
        env.update(settings)
        self._api = f"http://127.0.0.1:{api_port}" if api_port is not None else None
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hub", "demo"],
            cwd=cwd,
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

    def banner(self, name: str) -> str:
        """The value of a banner line (``hub demo: console    http://...``)."""
        for line in self.lines:
            match = re.match(rf"hub demo: {name} +(.*)$", line)
            if match:
                return match.group(1)
        raise AssertionError(f"no {name!r} line in:\n{self.output()}")

    @property
    def api(self) -> str:
        """The API's base URL: as configured, or as the banner printed it."""
        if self._api is None:
            self._api = self.banner("console").rstrip("/")
        return self._api

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


@pytest.fixture
def taken_ports() -> Iterator[tuple[int, int]]:
    """Two loopback ports another program (this test) listens on."""
    with socket.socket() as broker, socket.socket() as api:
        for sock in (broker, api):
            sock.bind(("127.0.0.1", 0))
            sock.listen()
        yield broker.getsockname()[1], api.getsockname()[1]


def test_demo_from_an_empty_folder_with_no_settings(tmp_path: Path) -> None:
    """The newcomer's first command: `hub demo` in an empty folder, no HUB_* set, on a
    machine whose default ports may be taken (Mosquitto's 1883 is, here and in CI).
    It reaches healthy on the shipped rule packs and raises the scenario's alerts;
    nothing but ./var is written; SIGINT -> 0."""
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    started = time.monotonic()
    demo = Demo(None, None, None, cwd=fresh)
    try:
        _shows_fleet_and_scenario(demo, started)
        health = httpx.get(f"{demo.api}/api/v1/health", timeout=10).json()
        assert health["ok"] is True, health
        assert "shipped with the hub" in demo.banner("rules")
        assert "shipped with the hub" in demo.banner("routes")
        assert demo.banner("data") == str(fresh / "var")
        for port in ("1883", "8080"):
            for line in demo.lines:
                if f"127.0.0.1:{port} is in use" in line:  # taken: said so, moved on
                    assert "instead" in line
        assert demo.interrupt() == 0, demo.output()
    finally:
        demo.kill()
    assert sorted(p.name for p in fresh.iterdir()) == ["var"]


def test_demo_takes_the_next_free_ports_when_its_own_are_taken(
    tmp_path: Path, taken_ports: tuple[int, int]
) -> None:
    """The broker's and the API's ports are in use: the demo says which, takes the next
    free ones, its fleet reports through the moved broker, the API answers on the moved
    port; SIGINT -> 0."""
    broker_port, api_port = taken_ports
    demo = Demo(tmp_path / "var", broker_port, None, HUB_API__PORT=str(api_port))
    try:
        key = demo.key(timeout=DEADLINE_S)
        output = demo.output()
        assert f"127.0.0.1:{broker_port} is in use by another program" in output
        assert f"127.0.0.1:{api_port} is in use by another program" in output
        assert f":{api_port}" not in demo.api
        assert f":{broker_port} " not in demo.banner("broker")

        def reporting() -> bool:
            devices = demo.get(key, "/devices", limit=1000)
            return sum(1 for d in devices if d["last_seen_ms"]) >= 300

        wait_for(reporting, timeout=DEADLINE_S, interval=1, what="the fleet reporting")
        assert demo.interrupt() == 0, demo.output()
    finally:
        demo.kill()
