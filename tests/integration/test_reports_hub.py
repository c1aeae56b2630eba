"""Citizen reports in a real `hub run` with a real Mosquitto: reports become a signal.

Reports are posted as 311 apps post them (Open311, url-encoded); the alert the gas
cluster raises must reach the MQTT alert topic of the district like any other.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.conftest import Names
from tests.hubproc import REPO, HubProcess, Publisher, hub_with_rules
from tests.services import Mosquitto, wait_for

pytestmark = pytest.mark.integration

RULES = """
rules:
  - id: test-flood
    description: River level above 3 m (reports integration test)
    match: {asset_type: flood_gauge}
    kind: threshold
    metric: water_level_m
    op: ">"
    value: 3.0
    for: 0
    severity: critical
  - id: test-citizens-gas
    description: Several citizens smell gas close together
    kind: citizen_reports
    service: gas_smell
    min_reports: 3
    radius_m: 200
    window: 30m
    severity: critical
"""
#: A place and points about 55 m and 110 m north of it.
LAT, LON = 48.8566, 2.3522
STEP = 0.0005


@pytest.fixture
def hub(mosquitto: Mosquitto, names: Names, tmp_path: Path) -> Iterator[HubProcess]:
    """A hub with the rules above and the shipped services."""
    process, _ = hub_with_rules(
        mosquitto.url,
        names.topic_prefix(),
        tmp_path,
        RULES,
        HUB_REPORTS__SERVICES_PATH=str(REPO / "rules" / "services.yaml"),
    )
    process.start()
    yield process
    process.stop()


class AlertTopic:
    """Every message on ``{prefix}/alerts/#``, collected by a paho client in its thread."""

    def __init__(self, url: str, prefix: str) -> None:
        port = int(url.rsplit(":", 1)[1])
        self.messages: list[tuple[str, dict[str, Any]]] = []
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{prefix}-watch")
        self.client.on_message = self._message
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(f"{prefix}/alerts/#", qos=1)
        self.client.loop_start()
        assert self._subscribed.wait(10)

    def _message(self, _c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        if not message.topic.endswith("/state"):
            self.messages.append((message.topic, json.loads(message.payload)))

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _provision(hub: HubProcess, device_id: str, district: str, asset_type: str, lat: float) -> None:
    response = httpx.put(
        f"{hub.url}/api/v1/devices/{device_id}",
        json={"district": district, "asset_type": asset_type, "latitude": lat, "longitude": LON},
        headers={"Authorization": f"Bearer {hub.admin_key}"},
        timeout=10,
    )
    assert response.status_code in (200, 201), response.text


def _report(hub: HubProcess, service: str, lat: float, **extra: str) -> int:
    response = httpx.post(
        f"{hub.url}/open311/v2/requests.json",
        data={"service_code": service, "lat": f"{lat:.6f}", "long": f"{LON:.6f}", **extra},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return int(response.json()[0]["service_request_id"])


def _get(hub: HubProcess, path: str, **params: Any) -> Any:
    response = httpx.get(
        f"{hub.url}{path}",
        params=params,
        headers={"Authorization": f"Bearer {hub.admin_key}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_three_gas_reports_close_together_raise_an_alert_on_the_mqtt_alert_topic(
    hub: HubProcess, mosquitto: Mosquitto, names: Names
) -> None:
    """Three gas-smell reports within 200 m and minutes: an area alert of their district
    reaches {prefix}/alerts/d05/_area, the reports named in its explanation and listed
    on the alert."""
    prefix = names.topic_prefix()
    topic = AlertTopic(mosquitto.url, prefix)
    _provision(hub, names.device(1), "d05", "manhole", LAT)
    strong = {"attribute[strength]": "strong", "email": "neighbour@example.org"}
    ids = [_report(hub, "gas_smell", LAT + n * STEP, **strong) for n in range(3)]

    def fired() -> list[dict[str, Any]]:
        return [
            event
            for t, event in topic.messages
            if t == f"{prefix}/alerts/d05/_area" and event.get("rule_id") == "test-citizens-gas"
        ]

    [event] = wait_for(fired, timeout=30, what="the citizen alert on MQTT")  # type: ignore[misc]
    assert event["event"] == "firing"
    assert event["asset_type"] == "manhole"
    assert all(f"{i}" in event["summary"] for i in ids)
    assert "neighbour@example.org" not in json.dumps(topic.messages)
    detail = _get(hub, f"/api/v1/alerts/{event['alert_id']}")
    assert detail["explanation"]["reports"] == [str(i) for i in ids]
    assert sorted(r["id"] for r in detail["reports"]) == ids
    topic.close()


def test_a_report_near_a_flood_alert_links_to_its_incident_and_normal_sensors_get_a_hint(
    hub: HubProcess, mosquitto: Mosquitto, names: Names
) -> None:
    """A flooded street 55 m from an alerting gauge is linked to its alert and incident;
    three more near a gauge that reads normal give that gauge a hint."""
    prefix = names.topic_prefix()
    alerting, normal = names.device(1), names.device(2)
    _provision(hub, alerting, "d03", "flood_gauge", LAT)
    _provision(hub, normal, "d03", "flood_gauge", LAT + 0.02)  # 2.2 km north
    publisher = Publisher(mosquitto.url)
    now = int(time.time() * 1000)
    publisher.publish(
        f"{prefix}/d03/flood_gauge/{alerting}/telemetry",
        {"ts": now, "seq": 0, "metrics": {"water_level_m": 3.6}},
    )
    publisher.publish(
        f"{prefix}/d03/flood_gauge/{normal}/telemetry",
        {"ts": now, "seq": 0, "metrics": {"water_level_m": 0.9}},
    )
    publisher.wait_all()
    publisher.close()

    def flood_alert() -> list[dict[str, Any]]:
        return _get(hub, "/api/v1/alerts", state="active", rule_id="test-flood")  # type: ignore[no-any-return]

    [alert] = wait_for(flood_alert, timeout=30, what="the flood alert")  # type: ignore[misc]
    report_id = _report(hub, "flooded_street", LAT + STEP)
    report = _get(hub, f"/api/v1/reports/{report_id}")
    assert [(x["alert_id"], x["incident_id"]) for x in report["links"]] == [
        (alert["id"], alert["incident_id"])
    ]
    assert report["district"] == "d03"
    detail = _get(hub, f"/api/v1/alerts/{alert['id']}")
    assert [r["id"] for r in detail["reports"]] == [report_id]
    by_incident = _get(hub, "/api/v1/reports", incident_id=alert["incident_id"])
    assert [r["id"] for r in by_incident] == [report_id]

    wait_for(lambda: _get(hub, f"/api/v1/devices/{normal}")["latest"], timeout=30, what="a reading")
    hinted = [_report(hub, "flooded_street", LAT + 0.02 + n * STEP / 2) for n in range(3)]
    hints = wait_for(
        lambda: _get(hub, f"/api/v1/devices/{normal}")["report_hints"],
        timeout=30,
        what="the hint on the normal gauge",
    )
    assert hints == [  # type: ignore[comparison-overlap]
        {
            "kind": "device",
            "district": "d03",
            "asset_type": "flood_gauge",
            "device_id": normal,
            "service_code": "flooded_street",
            "reports": hinted,
            "first_ms": hints[0]["first_ms"],  # type: ignore[index]
            "last_ms": hints[0]["last_ms"],  # type: ignore[index]
            "summary": hints[0]["summary"],  # type: ignore[index]
        }
    ]
    assert _get(hub, f"/api/v1/devices/{alerting}")["report_hints"] == []
