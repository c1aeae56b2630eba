"""Hot reload against a running hub (`hub run` subprocess, real Mosquitto, file watcher).

A valid edit of a rule file applies without restart; a broken edit keeps the
file's previous rules running and is reported in health and the API.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Names
from tests.hubproc import HubProcess, Publisher, alert_items, hub_with_rules
from tests.services import Mosquitto, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RULES = """\
rules:
  - id: high
    match: {asset_type: flood_gauge}
    kind: threshold
    metric: water_level_m
    op: ">"
    value: 3.0
    severity: critical
"""


def _rule(hub: HubProcess) -> dict[str, Any]:
    rule: dict[str, Any] = hub.get("/api/v1/rules/high")
    return rule


def _firing_sources(hub: HubProcess, district: str) -> list[str]:
    items = alert_items(hub)
    return sorted(
        a["source"]
        for a in items
        if a["rule_id"] == "high" and a["district"] == district and a["resolved_ms"] is None
    )


def test_edits_apply_live_and_a_broken_edit_keeps_the_old_rules(
    mosquitto: Mosquitto, names: Names, tmp_path: Path
) -> None:
    """value 3.0 -> 5.0 applies live; then `value: three` is reported while 5.0 keeps running."""
    prefix, district = names.topic_prefix(), names.district()
    hub, rule_file = hub_with_rules(mosquitto.url, prefix, tmp_path, RULES, file="flood.yaml")
    pub = Publisher(mosquitto.url)
    t0 = int(time.time() * 1000)

    def publish(n: int, level: float) -> None:
        device = names.device(n)
        pub.publish(
            f"{prefix}/{district}/flood_gauge/{device}/telemetry",
            {"ts": t0 + n, "metrics": {"water_level_m": level}},
        )
        pub.wait_all()

    try:
        hub.start()
        publish(0, 4.0)
        wait_for(lambda: _rule(hub)["firing"] == 1, timeout=30, what="4.0 > 3.0 fires")
        before = _rule(hub)["version"]

        # A valid edit: the rule changes version, its old alert is closed, 4.0 no longer fires.
        rule_file.write_text(RULES.replace("value: 3.0", "value: 5.0"))
        wait_for(lambda: _rule(hub)["version"] != before, timeout=30, what="new version live")
        edited = _rule(hub)["version"]
        wait_for(lambda: _firing_sources(hub, district) == [], timeout=30, what="old alert closed")
        publish(1, 4.0)
        publish(2, 5.5)
        wait_for(lambda: _rule(hub)["firing"] == 1, timeout=30, what="5.5 > 5.0 fires")
        assert _firing_sources(hub, district) == [names.device(2)]

        # A broken edit: reported in health and the API; the 5.0 rule keeps running.
        rule_file.write_text(RULES.replace("value: 3.0", "value: three"))
        wait_for(
            lambda: hub.health()["checks"]["rules"]["problems"], timeout=30, what="problem shown"
        )
        (problem,) = hub.health()["checks"]["rules"]["problems"]
        assert problem.startswith(f"{rule_file}:7: rules[0].value:"), problem
        assert _rule(hub)["version"] == edited
        publish(3, 4.5)
        publish(4, 5.6)
        wait_for(lambda: _rule(hub)["firing"] == 2, timeout=30, what="old rule still fires")
        assert _firing_sources(hub, district) == sorted([names.device(2), names.device(4)])

        # Fixing the file clears the problem.
        rule_file.write_text(RULES.replace("value: 3.0", "value: 5.0"))
        wait_for(
            lambda: not hub.health()["checks"]["rules"]["problems"],
            timeout=30,
            what="problem cleared",
        )
    finally:
        pub.close()
        assert hub.stop() == 0, hub.log_tail()
