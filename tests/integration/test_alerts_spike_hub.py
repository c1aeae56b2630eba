"""A one-reading spike against a real hub and Mosquitto: the control room hears of it.

The shipped routes send every alert to MQTT with ``group_wait: 0s``; an alert that
fires and clears within one live batch must still be published, firing then resolved.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.conftest import Names
from tests.hubproc import Publisher, alert_items, hub_with_rules
from tests.services import Mosquitto, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RULES = """\
rules:
  - id: gauge-spike
    match: {asset_type: flood_gauge}
    kind: threshold
    metric: water_level_m
    op: ">"
    value: 3.0
    clear: 2.8
    severity: critical
"""


class AlertListener:
    """A paho subscriber to ``{prefix}/alerts/+/+`` (events, not retained state)."""

    def __init__(self, url: str, prefix: str) -> None:
        host, port = url.removeprefix("mqtt://").rsplit(":", 1)
        self.events: list[dict[str, Any]] = []
        self.subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        self.client.on_connect = lambda c, *_: c.subscribe(f"{prefix}/alerts/+/+", qos=1)
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_message = lambda _c, _u, m: self.events.append(
            {"topic": m.topic, **json.loads(m.payload)}
        )
        self.client.connect(host, int(port))
        self.client.loop_start()

    def close(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()


def test_spike_in_one_batch_is_published_firing_then_resolved(
    mosquitto: Mosquitto, names: Names, tmp_path: Path
) -> None:
    """A reading over the threshold and a normal one in the same batch message: the
    alert opens and resolves in one live batch, and {prefix}/alerts/{district}/{device}
    carries its firing event and then its resolved event."""
    prefix, district, device = names.topic_prefix(), names.district(1), names.device()
    hub, _ = hub_with_rules(mosquitto.url, prefix, tmp_path, RULES)
    listener = AlertListener(mosquitto.url, prefix)
    pub = Publisher(mosquitto.url)
    try:
        hub.start()
        wait_for(listener.subscribed.is_set, what="alert subscription")
        t0 = int(time.time() * 1000) - 5000
        pub.publish(
            f"{prefix}/{district}/flood_gauge/{device}/telemetry",
            {
                "readings": [
                    {"ts": t0, "metrics": {"water_level_m": 3.6}},
                    {"ts": t0 + 1000, "metrics": {"water_level_m": 1.2}},
                ]
            },
        )
        pub.wait_all()
        wait_for(lambda: len(listener.events) >= 2, timeout=30, what="firing and resolved")
        topic = f"{prefix}/alerts/{district}/{device}"
        assert [(e["topic"], e["event"]) for e in listener.events] == [
            (topic, "firing"),
            (topic, "resolved"),
        ]
        assert listener.events[0]["alert_id"] == listener.events[1]["alert_id"]
        (alert,) = alert_items(hub)
        assert alert["status"] == "resolved"
    finally:
        listener.close()
        pub.close()
        assert hub.stop() == 0, hub.log_tail()
