"""Cold start of a real hub on the embedded store: lost rule state, windows rebuilt from the store.

Readings are stored, the hub stops cleanly (nothing left to replay from the
journal), the rule state file is deleted, and the hub starts again. A
rate_of_change rule whose window needs the earlier readings must then fire on
the first new reading: only the stored history can have told it the old level.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.conftest import Names
from tests.hubproc import HubProcess, Publisher, alert_items, hub_with_rules
from tests.services import Mosquitto, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RULES = """\
rules:
  - id: rising
    match: {asset_type: flood_gauge}
    kind: rate_of_change
    metric: water_level_m
    window: 30m
    op: ">="
    value: 0.5
    severity: warning
"""
MIN = 60_000


def _rule(hub: HubProcess) -> dict[str, int]:
    rule: dict[str, int] = hub.get("/api/v1/rules/rising")
    return rule


def _stored(hub: HubProcess, device: str) -> int:
    answer = hub.get(f"/api/v1/devices/{device}/telemetry", metric="water_level_m", start="-1h")
    return len(answer["points"])


def test_windows_rebuilt_from_the_store_after_the_state_is_lost(
    mosquitto: Mosquitto, names: Names, tmp_path: Path
) -> None:
    """No state file: the first live reading is compared with levels only the store knew."""
    prefix, district, gauge = names.topic_prefix(), names.district(), names.device(0)
    topic = f"{prefix}/{district}/flood_gauge/{gauge}/telemetry"
    hub, _ = hub_with_rules(mosquitto.url, prefix, tmp_path, RULES, HUB_STORE__BACKEND="embedded")
    state = hub.data_dir / "rules" / "state.bin"
    t0 = int(time.time() * 1000)
    pub = Publisher(mosquitto.url)
    try:
        hub.start()
        # A steady level over the last ten minutes: nothing fires.
        for i in range(10):
            pub.publish(
                topic, {"ts": t0 - (10 - i) * MIN, "seq": i, "metrics": {"water_level_m": 1.0}}
            )
        pub.wait_all()
        wait_for(lambda: _stored(hub, gauge) == 10, timeout=30, what="10 readings stored")
        assert _rule(hub)["firing"] == 0
        assert hub.stop() == 0, hub.log_tail()
        assert state.exists(), "a clean stop saves the rule state"
        state.unlink()

        hub.start()
        pub.publish(topic, {"ts": t0, "seq": 10, "metrics": {"water_level_m": 1.6}})
        pub.wait_all()
        wait_for(lambda: _rule(hub)["firing"] == 1, timeout=30, what="rising fires")
        items = alert_items(hub)
        (alert,) = [a for a in items if a["rule_id"] == "rising" and a["district"] == district]
        assert alert["source"] == gauge
        assert "rule windows rebuilt from history" in hub.log_tail(200_000)
    finally:
        pub.close()
        assert hub.stop() == 0, hub.log_tail()
