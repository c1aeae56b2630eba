"""Resolving an alert by hand while its condition holds, against a real hub and
Mosquitto: the alert comes back at the next reading that still holds, across a crash too."""

from __future__ import annotations

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
    clear: 2.8
    severity: critical
"""


class Gauge:
    """One flood gauge publishing readings one second apart."""

    def __init__(self, pub: Publisher, prefix: str, device: str) -> None:
        self.pub = pub
        self.topic = f"{prefix}/d01/flood_gauge/{device}/telemetry"
        self.ts = int(time.time() * 1000) - 60_000

    def level(self, value: float) -> None:
        """Publish one reading and wait for the broker's PUBACK."""
        self.ts += 1000
        self.pub.publish(self.topic, {"ts": self.ts, "metrics": {"water_level_m": value}})
        self.pub.wait_all()


def _resolve(hub: HubProcess, alert_id: str) -> dict[str, Any]:
    response = httpx.post(
        f"{hub.url}/api/v1/alerts/{alert_id}/resolve",
        json={"comment": "crew says the river is fine"},
        headers={"Authorization": f"Bearer {hub.admin_key}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _open(hub: HubProcess) -> list[dict[str, Any]]:
    return [a for a in alert_items(hub) if a["status"] == "firing"]


def test_resolved_by_hand_while_high_comes_back_at_the_next_high_reading(
    mosquitto: Mosquitto, names: Names, tmp_path: Path
) -> None:
    """The operator resolves a flood alert while the gauge still reads high: the
    timeline says the condition held, and the next high reading opens a new alert
    (reopened_from the resolved one) instead of the rule staying silent."""
    hub, _ = hub_with_rules(mosquitto.url, names.topic_prefix(), tmp_path, RULES)
    pub = Publisher(mosquitto.url)
    gauge = Gauge(pub, names.topic_prefix(), names.device())
    try:
        hub.start()
        gauge.level(3.5)
        (first,) = wait_for(lambda: _open(hub), timeout=30, what="the alert")  # type: ignore[misc]
        assert _resolve(hub, first["id"])["status"] == "resolved"
        timeline = hub.get(f"/api/v1/alerts/{first['id']}")["timeline"]
        assert timeline[-1]["status"] == "resolved"
        assert timeline[-1]["detail"]["condition_holds"] is True
        gauge.level(3.6)
        (again,) = wait_for(lambda: _open(hub), timeout=30, what="the alert back")  # type: ignore[misc]
        assert again["id"] != first["id"]
        assert again["reopened_from"] == first["id"]
    finally:
        pub.close()
        assert hub.stop() == 0, hub.log_tail()


def test_resolved_by_hand_just_before_a_crash_still_comes_back(
    mosquitto: Mosquitto, names: Names, tmp_path: Path
) -> None:
    """Rule state saved while the alert fired, the alert resolved by hand, then the hub
    killed before its next checkpoint: after the restart the next high reading still
    brings the alert back (the saved state is re-armed from the alert's history)."""
    hub, _ = hub_with_rules(mosquitto.url, names.topic_prefix(), tmp_path, RULES)
    pub = Publisher(mosquitto.url)
    gauge = Gauge(pub, names.topic_prefix(), names.device())
    try:
        hub.start()
        gauge.level(3.5)
        (first,) = wait_for(lambda: _open(hub), timeout=30, what="the alert")  # type: ignore[misc]
        assert hub.stop() == 0, hub.log_tail()  # a clean stop saves the firing state
        hub.start()
        _resolve(hub, first["id"])
        hub.kill()  # within the live checkpoint's 15 s: the saved state still says firing
        hub.start()
        gauge.level(3.6)
        (again,) = wait_for(lambda: _open(hub), timeout=30, what="the alert back")  # type: ignore[misc]
        assert again["reopened_from"] == first["id"]
    finally:
        pub.close()
        assert hub.stop() == 0, hub.log_tail()
