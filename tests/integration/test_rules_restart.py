"""Rule state across a restart of the real hub (`hub run` against a real Mosquitto).

A rule pending with `for: 2m` completes at its original deadline after the hub is
SIGKILLed and restarted, and a firing rule is still firing without a new reading.
Time is event time: the reading that completes `for: 2m` carries a timestamp two
minutes after the first (slightly in the future, which the hub accepts), so the
test needs no waiting; the restart happens well inside those two minutes, before
the hub's own timer could complete the rule.
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
  - id: high
    match: {asset_type: flood_gauge}
    kind: threshold
    metric: water_level_m
    op: ">"
    value: 3.0
    for: 2m
    severity: critical
  - id: gas
    match: {asset_type: manhole}
    kind: threshold
    metric: methane_pct_lel
    op: ">="
    value: 10
    severity: warning
"""


def _counts(hub: HubProcess, rule_id: str) -> tuple[int, int]:
    rule = hub.get(f"/api/v1/rules/{rule_id}")
    return rule["firing"], rule["pending"]


def _saved_offset(state: Path) -> int:
    import json

    try:
        return int(json.loads(state.read_bytes().partition(b"\n")[0])["journal_offset"])
    except (OSError, ValueError, KeyError):
        return -1


def test_pending_and_firing_survive_a_sigkill(
    mosquitto: Mosquitto, names: Names, tmp_path: Path
) -> None:
    """Pending (for: 2m) fires at its original deadline and firing stays firing after SIGKILL."""
    prefix = names.topic_prefix()
    district = names.district()
    gauge, manhole = names.device(0), names.device(1)
    hub, _ = hub_with_rules(mosquitto.url, prefix, tmp_path, RULES)
    state = hub.data_dir / "rules" / "state.bin"
    t0 = int(time.time() * 1000)
    pub = Publisher(mosquitto.url)
    try:
        hub.start()
        pub.publish(
            f"{prefix}/{district}/flood_gauge/{gauge}/telemetry",
            {"ts": t0, "metrics": {"water_level_m": 3.5}},
        )
        pub.publish(
            f"{prefix}/{district}/manhole/{manhole}/telemetry",
            {"ts": t0, "metrics": {"methane_pct_lel": 12.0}},
        )
        pub.wait_all()
        wait_for(lambda: _counts(hub, "high") == (0, 1), timeout=30, what="high pending")
        wait_for(lambda: _counts(hub, "gas") == (1, 0), timeout=30, what="gas firing")
        # The live consumer checkpoints rule state with its journal offset every ~2 s.
        wait_for(lambda: _saved_offset(state) > 0, timeout=30, what="rule state saved")
        hub.kill()

        hub.start()
        assert _counts(hub, "gas") == (1, 0)
        assert _counts(hub, "high") == (0, 1)
        pub.publish(
            f"{prefix}/{district}/flood_gauge/{gauge}/telemetry",
            {"ts": t0 + 120_000, "metrics": {"water_level_m": 3.4}},
        )
        pub.wait_all()
        wait_for(lambda: _counts(hub, "high") == (1, 0), timeout=30, what="high firing")
        items = alert_items(hub)
        mine = sorted((a["rule_id"], a["source"]) for a in items if a["district"] == district)
        assert mine == [("gas", manhole), ("high", gauge)]
    finally:
        pub.close()
        assert hub.stop() == 0, hub.log_tail()
