"""match.labels against a real hub: device labels come from provisioning (import file and API)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import Names
from tests.hubproc import HubProcess, Publisher, alert_items, hub_with_rules
from tests.services import Mosquitto, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RULES = """\
rules:
  - id: critical-gauge-high
    match: {asset_type: flood_gauge, labels: {criticality: high}}
    kind: threshold
    metric: water_level_m
    op: ">"
    value: 3.0
    severity: critical
  - id: gauge-high
    match: {asset_type: flood_gauge}
    kind: threshold
    metric: water_level_m
    op: ">"
    value: 3.0
    severity: warning
"""


def _firing(hub: HubProcess, rule_id: str) -> int:
    return int(hub.get(f"/api/v1/rules/{rule_id}")["firing"])


def _alert_sources(hub: HubProcess, rule_id: str, district: str) -> list[str]:
    items = alert_items(hub)
    return sorted(
        a["source"] for a in items if a["rule_id"] == rule_id and a["district"] == district
    )


def test_labels_rule_fires_only_for_the_labelled_device(
    mosquitto: Mosquitto, names: Names, tmp_path: Path
) -> None:
    """criticality=high (from `hub devices import`, later from the API) selects the devices."""
    prefix, district = names.topic_prefix(), names.district()
    high, low, unknown = names.device(0), names.device(1), names.device(2)
    devices = tmp_path / "devices.yaml"
    devices.write_text(
        "devices:\n"
        f"  - {{id: {high}, asset_type: flood_gauge, district: {district},"
        " metadata: {criticality: high}}\n"
        f"  - {{id: {low}, asset_type: flood_gauge, district: {district},"
        " metadata: {criticality: low}}\n"
    )
    hub, _ = hub_with_rules(mosquitto.url, prefix, tmp_path, RULES)
    hub.cli("devices", "import", str(devices))
    pub = Publisher(mosquitto.url)
    t0 = int(time.time() * 1000)

    def publish(device: str, at_ms: int, level: float) -> None:
        pub.publish(
            f"{prefix}/{district}/flood_gauge/{device}/telemetry",
            {"ts": at_ms, "metrics": {"water_level_m": level}},
        )

    try:
        hub.start()
        for device in (high, low, unknown):
            publish(device, t0, 3.5)
        pub.wait_all()
        # Every reading has been evaluated once the unlabelled rule fired for all three.
        wait_for(lambda: _firing(hub, "gauge-high") == 3, timeout=30, what="gauge-high x3")
        assert _firing(hub, "critical-gauge-high") == 1
        assert _alert_sources(hub, "critical-gauge-high", district) == [high]

        # Provisioning the unknown device with the label through the API applies live.
        response = httpx.put(
            f"{hub.url}/api/v1/devices/{unknown}",
            json={
                "district": district,
                "asset_type": "flood_gauge",
                "metadata": {"criticality": "high"},
            },
            headers={"Authorization": f"Bearer {hub.admin_key}"},
            timeout=10,
        )
        assert response.status_code == 200, response.text
        step = iter(range(1, 10_000))

        def labelled_rule_fired_for_it() -> bool:
            # The engine sees provisioning changes on its 1 s timer: keep the device talking.
            publish(unknown, t0 + next(step) * 100, 3.6)
            return _firing(hub, "critical-gauge-high") == 2

        wait_for(labelled_rule_fired_for_it, timeout=30, interval=0.3, what="label applied")
        assert _alert_sources(hub, "critical-gauge-high", district) == sorted([high, unknown])
    finally:
        pub.close()
        assert hub.stop() == 0, hub.log_tail()
