"""Ingest's registry check and status counting against a real hub and Mosquitto.

A message on one district's topic must not write into another district's device;
status messages are counted in ``hub_status_received_total``.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Names
from tests.hubproc import HubProcess, Publisher, alert_items, hub_with_rules
from tests.services import Mosquitto, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RULES = """\
rules:
  - id: gauge-high
    match: {asset_type: flood_gauge}
    kind: threshold
    metric: water_level_m
    op: ">"
    value: 3.0
    severity: critical
"""


def _device(hub: HubProcess, device: str) -> dict[str, Any]:
    body: dict[str, Any] = hub.get(f"/api/v1/devices/{device}")
    return body


def _metric(hub: HubProcess, name: str) -> float:
    text = httpx.get(
        f"{hub.url}/metrics", headers={"Authorization": f"Bearer {hub.admin_key}"}, timeout=5
    ).text
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_message_on_another_districts_topic_is_refused_and_changes_nothing(
    mosquitto: Mosquitto, names: Names, tmp_path: Path
) -> None:
    """A reading (over a rule's threshold) and a status for a d02 gauge on d01's topics
    are dead letters `device_mismatch`: no stored point, no latest value, no seq
    accounting, no status change, no alert, and nothing a d01-scoped key can see."""
    prefix, device = names.topic_prefix(), names.device()
    devices = tmp_path / "devices.csv"
    devices.write_text(f"id,asset_type,district\n{device},flood_gauge,d02\n")
    hub, _ = hub_with_rules(mosquitto.url, prefix, tmp_path, RULES)
    hub.cli("devices", "import", str(devices))
    d01_operator = hub.cli(
        "keys", "create", "--role", "operator", "--name", "d01-desk", "--scope", "district=d01"
    ).stdout.split()[-1]
    pub = Publisher(mosquitto.url)
    t0 = int(time.time() * 1000) - 60_000
    own = f"{prefix}/d02/flood_gauge/{device}"
    wrong = f"{prefix}/d01/flood_gauge/{device}"
    try:
        hub.start()
        pub.publish(f"{own}/telemetry", {"ts": t0, "seq": 1, "metrics": {"water_level_m": 1.0}})
        pub.publish(
            f"{wrong}/telemetry", {"ts": t0 + 1, "seq": 2, "metrics": {"water_level_m": 3.5}}
        )
        pub.publish(f"{wrong}/status", {"state": "offline", "ts": t0 + 2})
        # The device's own next reading is the fence: the live stage reads in order.
        pub.publish(f"{own}/telemetry", {"ts": t0 + 3, "seq": 2, "metrics": {"water_level_m": 1.1}})
        pub.wait_all()
        wait_for(
            lambda: _device(hub, device)["latest"].get("water_level_m") == 1.1,
            timeout=30,
            what="the device's own readings",
        )
        info = _device(hub, device)
        assert (info["district"], info["status"]) == ("d02", "online")
        assert (info["seq_gaps"], info["seq_duplicates"]) == (0, 0)
        letters = hub.get("/api/v1/dead-letters", reason="device_mismatch")["items"]
        assert sorted(d["topic"] for d in letters) == [f"{wrong}/status", f"{wrong}/telemetry"]
        assert {d["district"] for d in letters} == {"d02"}
        assert "registered as d02/flood_gauge" in letters[0]["detail"]
        assert alert_items(hub) == []

        def stored() -> list[float]:
            points = hub.get(
                f"/api/v1/devices/{device}/telemetry", metric="water_level_m", start="-1h"
            )["points"]
            return [p["value"] for p in points]

        wait_for(lambda: len(stored()) >= 2, timeout=30, what="stored readings")
        assert stored() == [1.0, 1.1]

        scoped = {"Authorization": f"Bearer {d01_operator}"}
        for path in ("/api/v1/devices", "/api/v1/alerts", "/api/v1/dead-letters"):
            response = httpx.get(f"{hub.url}{path}", headers=scoped, timeout=5)
            assert response.status_code == 200, response.text
            body = response.json()
            assert (body["items"] if isinstance(body, dict) else body) == [], path
    finally:
        pub.close()
        assert hub.stop() == 0, hub.log_tail()


def test_status_messages_are_counted(mosquitto: Mosquitto, names: Names, tmp_path: Path) -> None:
    """Every accepted status message adds one to hub_status_received_total; a refused
    one (bad payload) counts as a rejection instead."""
    prefix, device = names.topic_prefix(), names.device()
    hub, _ = hub_with_rules(mosquitto.url, prefix, tmp_path, RULES)
    pub = Publisher(mosquitto.url)
    topic = f"{prefix}/d03/flood_gauge/{device}/status"
    try:
        hub.start()
        before = _metric(hub, "hub_status_received_total")
        pub.publish(topic, {"state": "online"})
        pub.publish(topic, {"state": "offline"})
        pub.publish(topic, {"state": "sleeping"})
        pub.wait_all()
        wait_for(lambda: _device(hub, device)["status"] == "offline", timeout=30, what="statuses")
        wait_for(lambda: hub.get("/api/v1/dead-letters", reason="bad_status")["items"])
        assert _metric(hub, "hub_status_received_total") - before == 2
    finally:
        pub.close()
        assert hub.stop() == 0, hub.log_tail()
