"""Standard clients on a real hub: frost-sta-client reads the SensorThings API, Frictionless
validates every Data Package, all without a key, over the demo's fleet and two days of its
readings sent through Mosquitto."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import frost_sta_client as fsc
import httpx
import pytest

from devices.signals import DeviceSpec, SignalModel, rounded
from devices.simulator import build_fleet
from tests.conftest import Names
from tests.hubproc import HubProcess, Publisher, env_for
from tests.services import Mosquitto, wait_for

pytestmark = pytest.mark.integration

DAY = 86_400_000
STEP = 15 * 60_000
#: The demo's fleet plan at 80 devices: 40 a district, each with 6 traffic counters (k is 5).
FLEET = build_fleet(80, 2)
SENT = ("flood_gauge", "traffic_counter", "air_quality", "manhole")


def readings(spec: DeviceSpec, start: int, end: int) -> list[dict[str, object]]:
    """What the demo's signal model says the device measured, every 15 minutes."""
    model = SignalModel(spec, seed=1)
    return [{"ts": ts, "metrics": rounded(model.sample(ts))} for ts in range(start, end, STEP)]


@pytest.fixture
def hub(mosquitto: Mosquitto, names: Names, tmp_path: Path) -> Iterator[tuple[HubProcess, int]]:
    """A hub that received two days of the fleet's readings, then restarted with open data on
    (its publisher then releases everything that is due at once)."""
    prefix = names.topic_prefix()
    (tmp_path / "rules").mkdir()
    base_env = env_for(
        prefix,
        mosquitto.url,
        HUB_RULES__PATHS=str(tmp_path / "rules"),
        HUB_OPEN_DATA__SETTLE_S="0",
        HUB_OPEN_DATA__BACKFILL_DAYS="3",
        HUB_OPEN_DATA__PUBLISH_EVERY_S="1",
        HUB_OPEN_DATA__RATE_PER_S="1000",
        HUB_OPEN_DATA__BURST="10000",
    )
    data = tmp_path / "hub"
    feeding = HubProcess(data, {**base_env, "HUB_OPEN_DATA__ENABLED": "false"})
    devices = tmp_path / "fleet.csv"
    with devices.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "asset_type", "district", "latitude", "longitude"])
        for s in FLEET:
            writer.writerow([s.device_id, s.asset_type, s.district, s.latitude, s.longitude])
    feeding.cli("devices", "import", str(devices))
    feeding.start()
    now = time.time_ns() // 1_000_000
    start = now // DAY * DAY - 2 * DAY
    publisher = Publisher(mosquitto.url)
    sent = 0
    for spec in FLEET:
        if spec.asset_type not in SENT:
            continue
        batch = readings(spec, start, now - 60_000)
        sent += len(batch)
        topic = f"{prefix}/{spec.district}/{spec.asset_type}/{spec.device_id}/telemetry"
        for i in range(0, len(batch), 200):
            publisher.publish(topic, {"readings": batch[i : i + 200]})
    publisher.wait_all()
    publisher.close()
    gauge = next(s for s in FLEET if s.asset_type == "flood_gauge")

    def stored() -> bool:
        points = feeding.get(
            f"/api/v1/devices/{gauge.device_id}/telemetry",
            metric="water_level_m",
            start=str(start),
            end=str(now),
            every="1d",
            agg="count",
        )["points"]
        return sum(p["value"] for p in points) == len(readings(gauge, start, now - 60_000))

    wait_for(stored, timeout=120, what="the readings in the store")
    feeding.stop()
    serving = HubProcess(data, base_env)
    serving._admin_key = feeding.admin_key  # the same data dir: the key made for feeding
    serving.start()
    wait_for(
        lambda: any(
            r["dataset"] == "traffic_counter-daily"
            for r in serving.get("/api/v1/open-data/releases", kind="daily")
        ),
        timeout=120,
        what="the daily releases",
    )
    yield serving, start
    serving.stop()


def test_frost_client_lists_things_and_pages_observations(hub: tuple[HubProcess, int]) -> None:
    """frost-sta-client lists the Things and Datastreams and pages through every Observation
    of a demo flood gauge, following @iot.nextLink, without a key; nothing hidden is there."""
    process, start = hub
    service = fsc.SensorThingsService(f"{process.url}/sta/v1.1")
    things = list(service.things().query().top(25).list())
    ids = {t.id for t in things}
    assert {s.device_id for s in FLEET if s.asset_type == "flood_gauge"} <= ids
    assert {"d01:traffic_counter", "d02:traffic_counter"} <= ids
    assert not any(i.startswith(("mh-", "wm-", "tc-")) for i in ids)
    streams = list(service.datastreams().query().top(50).list())
    assert any(s.id.endswith(":water_level_m") for s in streams)
    assert not any(s.id.endswith((":battery_v", ":h2s_ppm")) for s in streams)
    gauge = next(s for s in FLEET if s.asset_type == "flood_gauge")
    stream = service.datastreams().find(f"{gauge.device_id}:water_level_m")
    assert stream.unit_of_measurement.symbol == "m"
    observations = list(stream.get_observations().query().top(100).list())
    expected = readings(gauge, start, process_now() - 60_000)
    assert len(observations) >= len(expected) - 2  # the last reading's minute aside
    times = [o.phenomenon_time for o in observations]
    assert times == sorted(times)
    newest = list(stream.get_observations().query().orderby("phenomenonTime", "DESC").top(3).list())
    assert [o.phenomenon_time for o in newest[:3]] == sorted(times, reverse=True)[:3]
    assert observations[0].result == pytest.approx(expected[0]["metrics"]["water_level_m"])  # type: ignore[index]
    area = service.datastreams().find("d01:traffic_counter:vehicles_per_min")
    cells = list(area.get_observations().query().top(10).list())
    assert cells
    assert all(c.parameters["devices"] >= 5 for c in cells)


def process_now() -> int:
    """Now, in epoch ms."""
    return time.time_ns() // 1_000_000


def test_frictionless_validates_every_data_package(hub: tuple[HubProcess, int]) -> None:
    """`frictionless validate` on each dataset's datapackage.json URL, as the catalog links
    it, reports it valid: descriptor, Table Schema and the CSV it downloads."""
    process, _ = hub
    catalog = httpx.get(f"{process.url}/open/v1/catalog.json", timeout=10).json()
    packages = [
        d["downloadURL"]
        for dataset in catalog["dataset"]
        for d in dataset["distribution"]
        if d["downloadURL"].endswith("datapackage.json")
    ]
    assert len(packages) == 5
    for url in packages:
        result = subprocess.run(
            [sys.executable, "-m", "frictionless", "validate", "--json", url],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, (url, result.stdout[-2000:], result.stderr[-2000:])
        report = json.loads(result.stdout)
        assert report["valid"] is True, url
        rows = sum(task["stats"].get("rows") or 0 for task in report["tasks"])
        if "traffic_counter" in url or "flood_gauge" in url:
            assert rows > 0, url
