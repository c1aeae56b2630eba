"""Indicators of a real `hub run` fed over a real Mosquitto: roll-ups at the live
checkpoint, the API with a scoped key, the Prometheus gauges, the report and the audit."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Names
from tests.hubproc import HubProcess, Publisher, env_for
from tests.services import Mosquitto, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def hub(mosquitto: Mosquitto, names: Names, tmp_path: Path) -> Iterator[HubProcess]:
    """A running hub on the embedded store."""
    env = env_for(names.topic_prefix(), mosquitto.url, HUB_INDICATORS__SAVE_INTERVAL_S="5")
    process = HubProcess(tmp_path / "hub", env)
    process.start()
    yield process
    process.stop()


def _key(hub: HubProcess, role: str, name: str, *scope: str) -> str:
    args = ["keys", "create", "--role", role, "--name", name]
    for item in scope:
        args += ["--scope", item]
    return hub.cli(*args).stdout.split()[-1]


def _get(hub: HubProcess, key: str, path: str, **params: Any) -> httpx.Response:
    return httpx.get(
        f"{hub.url}{path}", params=params, headers={"Authorization": f"Bearer {key}"}, timeout=10
    )


def test_readings_become_indicators_a_scoped_key_reads_its_own(
    hub: HubProcess, mosquitto: Mosquitto, names: Names, tmp_path: Path
) -> None:
    """Ten minutes of two gauges (d07's missing three readings) become completeness points
    with their numerators; a d03 key sees d03 only; the gauges, the report and the audit
    chain follow."""
    prefix = names.topic_prefix()
    viewer = _key(hub, "viewer", "city-viewer")
    d03 = _key(hub, "viewer", "d03-viewer", "district=d03")
    pub = Publisher(mosquitto.url)
    now = int(time.time() * 1000)
    start = now - now % 60_000 - 10 * 60_000
    for i in range(10):
        ts = start + i * 60_000 + 5_000
        pub.publish(
            f"{prefix}/d03/flood_gauge/{names.device(1)}/telemetry",
            {"ts": ts, "seq": i, "metrics": {"water_level_m": 1.0}},
        )
        if i not in (2, 3, 4):
            pub.publish(
                f"{prefix}/d07/flood_gauge/{names.device(2)}/telemetry",
                {"ts": ts, "seq": i, "metrics": {"water_level_m": 1.0}},
            )
    pub.wait_all()

    def per_district(indicator: str, key: str = viewer, **params: str) -> dict[str, float]:
        # summed over the days: the ten minutes may straddle midnight
        r = _get(hub, key, f"/api/v1/indicators/{indicator}", start="-1d", **params)
        out: dict[str, float] = {}
        for p in r.json()["points"] if r.status_code == 200 else []:
            out[p["district"]] = out.get(p["district"], 0) + p["numerator"]
        return out

    # the roll-ups land at the live stage's checkpoint (every 15 s)
    wait_for(
        lambda: per_district("data_completeness_pct") == {"d03": 10, "d07": 7},
        timeout=60,
        what="completeness points",
    )
    assert per_district("data_completeness_pct", d03) == {"d03": 10}
    denied = _get(hub, d03, "/api/v1/indicators/data_completeness_pct", start="-1d", district="d07")
    assert denied.status_code == 403
    assert per_district("seq_loss_pct") == {"d03": 0, "d07": 3}

    def gauges() -> str:
        return httpx.get(f"{hub.url}/metrics", timeout=10).text

    wait_for(
        lambda: 'hub_indicator{district="d07",indicator="data_completeness_pct"}' in gauges(),
        timeout=60,
        what="gauges",
    )

    out = tmp_path / "report.html"
    hub.cli(
        "indicators", "report", "--period", "day", "--start=-1d", "--end", "now", "--out", str(out)
    )
    html = out.read_text()
    assert "District d07" in html
    assert "Devices pulling data completeness down" in html
    assert names.device(2) in html
    verified = hub.cli("audit", "verify")
    assert verified.stdout.startswith("OK:")
