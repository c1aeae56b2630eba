"""A small city for the open-data tests: the API over fakes (tests/unit/api) with a fleet of
every tier, readings of the last two days, and distinctive values for what must stay hidden."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from hub.messages import Reading
from hub.opendata.state import Release
from hub.settings import OpenDataSettings, Settings
from tests.unit.api.conftest import NOW_MS, Api, make_api

HOUR = 3_600_000
DAY = 86_400_000
STEP = 10 * 60_000
#: Metrics no asset type publishes: their names must never appear in a public answer.
NEVER_PUBLIC = (
    "battery_v",
    "h2s_ppm",
    "methane_pct_lel",
    "strain_ue",
    "vibration_mm_s",
    "pressure_bar",
    "flow_l_s",
    "power_w",
    "voltage_v",
)
#: Values only hidden metrics (internal or restricted where they are) ever carry.
SENTINEL = 987654.25


@dataclass(frozen=True)
class Device:
    """One device of the test city."""

    device_id: str
    district: str
    asset_type: str
    latitude: float | None = None
    longitude: float | None = None


#: The default city: aggregate-only traffic counters (6 in d01, over k; 3 in d02, under k),
#: device-level flood gauges, an air-quality station, a streetlight, a bridge without a
#: place, and manholes and a water main of which nothing is public.
CITY = [
    *(
        Device(f"tc-d01-{i}", "d01", "traffic_counter", 51.501234 + i / 1000, 7.501234)
        for i in range(6)
    ),
    *(
        Device(f"tc-d02-{i}", "d02", "traffic_counter", 51.521234, 7.521234 + i / 1000)
        for i in range(3)
    ),
    Device("fg-d01-1", "d01", "flood_gauge", 51.498765, 7.487654),
    Device("fg-d01-2", "d01", "flood_gauge", 51.497654, 7.491234),
    Device("aq-d02-1", "d02", "air_quality", 51.523456, 7.523456),
    Device("sl-d01-1", "d01", "streetlight", 51.502345, 7.502345),
    Device("br-d02-1", "d02", "bridge"),
    Device("mh-d01-1", "d01", "manhole", 51.503456, 7.503456),
    Device("mh-d01-2", "d01", "manhole", 51.504567, 7.504567),
    Device("wm-d02-1", "d02", "water_main", 51.524567, 7.524567),
]


def values(device: Device, ts: int, index: int) -> dict[str, float | bool]:
    """A reading: public values plain, hidden ones carrying SENTINEL-based numbers."""
    step = (ts // STEP) % 12
    hidden = SENTINEL + index
    if device.asset_type == "traffic_counter":
        return {"vehicles_per_min": 10.0 + index + step, "avg_speed_kmh": 40.0 + index}
    if device.asset_type == "flood_gauge":
        return {"water_level_m": 1.0 + step / 10, "rainfall_mm_h": 2.5, "battery_v": hidden}
    if device.asset_type == "air_quality":
        return {"pm2_5_ug_m3": 12.0 + step, "temperature_c": 8.5, "humidity_pct": 80.0}
    if device.asset_type == "streetlight":
        return {"lamp_on": step < 6, "power_w": hidden, "voltage_v": hidden}
    if device.asset_type == "bridge":
        return {"temperature_c": 7.0, "strain_ue": hidden, "vibration_mm_s": hidden}
    if device.asset_type == "manhole":
        return {"methane_pct_lel": hidden, "h2s_ppm": hidden, "water_level_m": hidden}
    return {"pressure_bar": hidden, "flow_l_s": hidden, "battery_v": hidden}


def readings_of(devices: list[Device], start: int, end: int) -> list[Reading]:
    """A reading every 10 minutes from each device over ``[start, end)``."""
    out = []
    for index, device in enumerate(devices):
        for ts in range(start, end, STEP):
            out.append(
                Reading(
                    device.district,
                    device.asset_type,
                    device.device_id,
                    ts,
                    values(device, ts, index),
                )
            )
    return out


@dataclass
class OpenCity:
    """The API with the city's devices and readings, and helpers to publish and read."""

    api: Api
    devices: list[Device]
    readings: list[Reading] = field(default_factory=list)

    def publish(self) -> list[Release]:
        """Publish what is due at the fake clock's time."""
        return asyncio.run(self.api.opendata.publisher.publish_due())

    def write(self, readings: list[Reading]) -> None:
        """Store readings."""
        self.readings.extend(readings)
        asyncio.run(self.api.store.write(readings))

    def get(self, path: str, **kw: Any) -> httpx.Response:
        """GET without a key."""
        return self.api.client.get(path, **kw)

    def json(self, path: str) -> Any:
        """GET without a key, expect 200, decode."""
        response = self.get(path)
        assert response.status_code == 200, (path, response.text)
        return response.json()


def open_settings(data_dir: Path, **open_data: Any) -> Settings:
    """Settings of a test city: two days back, no settling wait (the delays are the catalog's)."""
    defaults: dict[str, Any] = {"backfill_days": 2, "settle_s": 0, "rate_per_s": 1e4}
    defaults["burst"] = 100_000
    return Settings(data_dir=data_dir, open_data=OpenDataSettings(**{**defaults, **open_data}))


def make_city(
    tmp_path: Path, devices: list[Device] | None = None, **open_data: Any
) -> Iterator[OpenCity]:
    """An OpenCity over ``devices`` (default CITY) with two days of readings, not published."""
    devices = CITY if devices is None else devices
    for api in make_api(tmp_path, open_settings(tmp_path, **open_data)):
        api.registry.devices.clear()
        for d in devices:
            api.registry.add(
                d.device_id, d.district, d.asset_type, latitude=d.latitude, longitude=d.longitude
            )
        city = OpenCity(api, list(devices))
        city.write(readings_of(devices, NOW_MS - 2 * DAY, NOW_MS))
        yield city


@pytest.fixture(scope="module")
def shared_city(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenCity]:
    """The default city, published, shared by a module's tests that only read from it."""
    for made in make_city(tmp_path_factory.mktemp("city")):
        made.publish()
        yield made


@pytest.fixture
def city(tmp_path: Path) -> Iterator[OpenCity]:
    """The default city with its last two days published."""
    for made in make_city(tmp_path):
        made.publish()
        yield made


def leaks(text: str) -> list[str]:
    """What of the hidden tiers appears in ``text``: names, values, hidden devices' ids,
    and full-precision places."""
    found = [name for name in NEVER_PUBLIC if name in text]
    found += [v for v in (str(SENTINEL)[:6],) if v in text]
    found += [d.device_id for d in CITY if d.asset_type in ("manhole", "water_main")]
    found = [f for f in found if f in text]
    for d in CITY:
        if d.latitude is not None and (f"{d.latitude}" in text or f"{d.longitude}" in text):
            found.append(f"place of {d.device_id}")
    return found


def walk(document: Any) -> Iterator[Any]:
    """Every value nested in a decoded JSON document."""
    yield document
    if isinstance(document, dict):
        for value in document.values():
            yield from walk(value)
    elif isinstance(document, list):
        for value in document:
            yield from walk(value)


def decoded(response: httpx.Response) -> Any:
    """The body as JSON, or None for other content."""
    try:
        return json.loads(response.text)
    except ValueError:
        return None
