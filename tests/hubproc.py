"""Run the real `hub` as a subprocess for end-to-end tests, and publish to it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tests.services import env_without_hub, free_port, wait_for

REPO = Path(__file__).resolve().parent.parent


class HubProcess:
    """`python -m hub run` with its own data dir, API port and settings."""

    def __init__(self, data_dir: Path, env: Mapping[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.env = {
            **env_without_hub(),
            "HUB_DATA_DIR": str(data_dir),
            "HUB_API__PORT": str(self.port),
            "HUB_RULES__PATHS": str(REPO / "rules"),
            "HUB_RULES__MANAGED_DIR": str(data_dir / "managed-rules"),
            "HUB_ALERTS__ROUTES_PATH": str(REPO / "rules" / "routes.yaml"),
            "HUB_LOG__LEVEL": "INFO",
            **(env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir / "hub.log"
        self._admin_key: str | None = None
        #: Command prefix for the hub process (e.g. a profiler).
        self.wrap: list[str] = []

    @property
    def url(self) -> str:
        """Base URL of the hub's API."""
        return f"http://127.0.0.1:{self.port}"

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run another `hub` command with the same settings."""
        return subprocess.run(
            [sys.executable, "-m", "hub", *args],
            env=self.env,
            cwd=REPO,
            capture_output=True,
            text=True,
            check=check,
            timeout=120,
        )

    @property
    def admin_key(self) -> str:
        """An admin API key for this hub's data dir (created once)."""
        if self._admin_key is None:
            out = self.cli("keys", "create", "--role", "admin", "--name", "tests").stdout
            self._admin_key = out.split()[-1]
        return self._admin_key

    def start(self, timeout: float = 60.0, *, ready: bool = True) -> None:
        """Start `hub run` and wait until its health endpoint answers (and says ready)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [*self.wrap, sys.executable, "-m", "hub", "run"],
            env=self.env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

        def up() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"hub exited {self.proc.returncode}: {self.log_tail()}")
            try:
                answer = httpx.get(f"{self.url}/api/v1/health", timeout=1)
            except httpx.HTTPError:
                return False
            # Ready means subscribed too: readings published after this are not missed.
            return answer.status_code in (200, 503) and (
                bool(answer.json().get("ready")) or not ready
            )

        wait_for(up, timeout=timeout, what="hub API")

    def health(self) -> dict[str, Any]:
        """The decoded health document."""
        body: dict[str, Any] = httpx.get(f"{self.url}/api/v1/health", timeout=5).json()
        return body

    def get(self, path: str, **params: Any) -> Any:
        """GET an API path with the admin key; returns decoded JSON (raises on HTTP errors)."""
        response = httpx.get(
            f"{self.url}{path}",
            params=params,
            headers={"Authorization": f"Bearer {self.admin_key}"},
            timeout=10,
        )
        response.raise_for_status()
        return response.json()

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"hub did not stop on SIGTERM: {self.log_tail()}") from None
        code = self.proc.returncode
        self.proc = None
        return code

    def kill(self) -> None:
        """SIGKILL: the crash case."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def log_tail(self, n: int = 4000) -> str:
        """The end of the hub's log."""
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""


class Publisher:
    """A paho QoS 1 publisher that knows when the broker has every message."""

    def __init__(self, url: str, client_id: str = "") -> None:
        host, port = url.removeprefix("mqtt://").rsplit(":", 1)
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311
        )
        self.client.max_inflight_messages_set(200)
        self.client.max_queued_messages_set(0)
        self.client.connect(host, int(port))
        self.client.loop_start()
        self._infos: list[mqtt.MQTTMessageInfo] = []

    def publish(self, topic: str, payload: bytes | str | Mapping[str, Any] | list[Any]) -> None:
        """Queue one QoS 1 message."""
        if not isinstance(payload, (bytes, str)):
            payload = json.dumps(payload)
        self._infos.append(self.client.publish(topic, payload, qos=1))

    def publish_many(self, messages: Iterable[tuple[str, Any]]) -> None:
        """Queue many."""
        for topic, payload in messages:
            self.publish(topic, payload)

    def wait_all(self, timeout: float = 60.0) -> None:
        """Wait until the broker acknowledged every message."""
        wait_for(
            lambda: all(i.is_published() for i in self._infos),
            timeout=timeout,
            what="broker PUBACKs",
        )

    def close(self) -> None:
        """Disconnect."""
        self.client.loop_stop()
        self.client.disconnect()


class BackgroundFlow:
    """Readings from several devices at a steady rate, in a thread, with rising seq."""

    def __init__(self, url: str, prefix: str, devices: list[tuple[str, str, str]], rate: float):
        self.publisher = Publisher(url)
        self.prefix = prefix
        self.devices = devices
        self.rate = rate
        self.sent: dict[str, int] = dict.fromkeys((d[2] for d in devices), 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        """Begin publishing."""
        self._thread.start()

    def _run(self) -> None:
        interval = 1.0 / self.rate
        last_ts: dict[str, int] = {}
        n = 0
        next_at = time.monotonic()
        while not self._stop.is_set():
            district, asset, device = self.devices[n % len(self.devices)]
            seq = self.sent[device]
            # Distinct timestamps per device: a catch-up burst must not publish two
            # readings of one device in the same millisecond (same point in the store).
            ts = max(int(time.time() * 1000), last_ts.get(device, 0) + 1)
            last_ts[device] = ts
            self.publisher.publish(
                f"{self.prefix}/{district}/{asset}/{device}/telemetry",
                {
                    "ts": ts,
                    "seq": seq,
                    "metrics": {"water_level_m": 1.0 + (seq % 7) / 10},
                },
            )
            self.sent[device] = seq + 1
            n += 1
            next_at += interval
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def stop(self) -> int:
        """Stop publishing, wait for every PUBACK, return how many were sent."""
        self._stop.set()
        self._thread.join()
        self.publisher.wait_all()
        self.publisher.close()
        return sum(self.sent.values())


def env_for(prefix: str, mqtt_url: str, **extra: str) -> dict[str, str]:
    """Hub settings for a test using an external broker and topic prefix."""
    return {
        "HUB_MQTT__URL": mqtt_url,
        "HUB_MQTT__TOPIC_PREFIX": prefix,
        "HUB_MQTT__CLIENT_ID": f"hub-{prefix}",
        **extra,
    }


def hub_with_rules(
    mosquitto_url: str,
    prefix: str,
    tmp_path: Path,
    rules: str,
    *,
    file: str = "r.yaml",
    **extra: str,
) -> tuple[HubProcess, Path]:
    """A hub (not started) evaluating ``rules`` from a folder of its own; and the rule file."""
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir(exist_ok=True)
    rule_file = rules_dir / file
    rule_file.write_text(rules)
    env = env_for(
        prefix,
        mosquitto_url,
        HUB_RULES__PATHS=str(rules_dir),
        HUB_RULES__MANAGED_DIR=str(tmp_path / "managed"),
        **extra,
    )
    return HubProcess(tmp_path / "hub", env), rule_file


def alert_items(hub: HubProcess) -> list[dict[str, Any]]:
    """Every alert the hub's API lists (first page)."""
    alerts = hub.get("/api/v1/alerts")
    items: list[dict[str, Any]] = alerts["items"] if isinstance(alerts, dict) else alerts
    return items
