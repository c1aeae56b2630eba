"""Realistic, deterministic sensor signals for the simulated fleet.

Each simulated device has a :class:`SignalModel`: its natural readings follow the
time of day (the sun for temperatures and streetlights, rush hours for traffic,
air quality and bridge load, water demand peaks for mains), district weather
(showers that raise gauge and manhole levels with a lag), slow battery decay and
sensor noise. Everything comes from a per-device ``random.Random`` seeded from the
fleet seed and the device id, so a fleet with the same seed is the same fleet.

Times of day are UTC (the fictional city keeps UTC).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass

from hub.messages import MetricValue

_HOUR_MS = 3_600_000
_DAY_MS = 24 * _HOUR_MS
#: Batteries are replaced this often, so a decaying voltage never leaves its range.
_BATTERY_LIFE_DAYS = 400.0
#: Volts lost per day of battery life (3.9 V new, ~3.3 V when replaced).
_BATTERY_DECAY_V_DAY = 0.0015
#: How slowly water levels follow rainfall (exponential lag), seconds.
_LEVEL_LAG_S = 1200.0


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """One simulated device: identity, place in the city, index in the fleet."""

    device_id: str
    district: str
    asset_type: str
    latitude: float
    longitude: float
    index: int


def hour_of_day(ts_ms: int) -> float:
    """Hour of the day (0-24, fractional) of an epoch-ms time, UTC."""
    return (ts_ms % _DAY_MS) / _HOUR_MS


def sun(hour: float) -> float:
    """-1 at 01:00, +1 at 13:00: the daily temperature and light cycle."""
    return math.cos(2 * math.pi * (hour - 13.0) / 24.0)


def traffic(hour: float) -> float:
    """Road traffic intensity 0..~1: night low, peaks at 08:00 and 17:30."""
    morning = math.exp(-(((hour - 8.0) / 1.2) ** 2))
    evening = 0.9 * math.exp(-(((hour - 17.5) / 1.5) ** 2))
    daytime = 0.35 * max(0.0, math.sin(math.pi * (hour - 6.0) / 15.0)) if 6 <= hour <= 21 else 0.0
    return min(1.0, 0.05 + morning + evening + daytime)


def water_demand(hour: float) -> float:
    """Drinking-water demand 0.3..~1.2: morning and evening peaks."""
    return (
        0.3
        + 0.55 * math.exp(-(((hour - 7.5) / 1.5) ** 2))
        + 0.4 * math.exp(-(((hour - 19.0) / 2.0) ** 2))
    )


def district_rain_mm_h(district_seed: float, ts_ms: int) -> float:
    """Rainfall of a district: smooth weather with occasional showers (0..~10 mm/h)."""
    t = ts_ms / 1000.0
    weather = (
        math.sin(2 * math.pi * t / 18_000 + district_seed)
        + 0.6 * math.sin(2 * math.pi * t / 6_100 + 2.1 * district_seed)
        + 0.3 * math.sin(2 * math.pi * t / 2_200 + 3.7 * district_seed)
    )
    return max(0.0, weather - 1.1) * 12.0


#: Standard deviation of each metric's sensor noise (also used on scripted values).
NOISE: dict[str, float] = {
    "water_level_m": 0.004,
    "rainfall_mm_h": 0.05,
    "battery_v": 0.003,
    "pressure_bar": 0.03,
    "flow_l_s": 1.0,
    "strain_ue": 4.0,
    "vibration_mm_s": 0.15,
    "temperature_c": 0.2,
    "methane_pct_lel": 0.3,
    "h2s_ppm": 0.3,
    "pm2_5_ug_m3": 1.2,
    "pm10_ug_m3": 2.0,
    "no2_ug_m3": 2.5,
    "humidity_pct": 1.5,
    "power_w": 0.8,
    "voltage_v": 1.5,
    "vehicles_per_min": 2.0,
    "avg_speed_kmh": 2.5,
}

#: Decimal places each metric is reported with (what a real sensor resolves).
DECIMALS: dict[str, int] = {
    "water_level_m": 3,
    "battery_v": 3,
    "pressure_bar": 3,
    "methane_pct_lel": 2,
    "h2s_ppm": 2,
    "vehicles_per_min": 0,
}


class SignalModel:
    """The natural (unscripted) readings of one device over time."""

    def __init__(self, spec: DeviceSpec, seed: int) -> None:
        self.spec = spec
        self.rng = random.Random(f"{seed}:{spec.device_id}")  # noqa: S311 (simulation, not crypto)
        rng = self.rng
        district_rng = random.Random(f"{seed}:{spec.district}")  # noqa: S311
        self._district_seed = district_rng.uniform(0, 2 * math.pi)
        self._base = rng.uniform(0.0, 1.0)  # a device-specific level within its type's range
        self._battery_v0 = rng.uniform(3.85, 4.1)
        self._battery_age_days = rng.uniform(0, _BATTERY_LIFE_DAYS)
        self._level_lag = 0.0
        self._last_ts: int | None = None
        self._sampler: Callable[[int], dict[str, MetricValue]] = getattr(
            self, f"_{spec.asset_type}", self._generic
        )

    def noise(self, metric: str) -> float:
        """One draw of ``metric``'s sensor noise."""
        return self.rng.gauss(0.0, NOISE.get(metric, 0.01))

    def sample(self, ts_ms: int) -> dict[str, MetricValue]:
        """The device's natural readings at ``ts_ms`` (advances lagged state)."""
        values = self._sampler(ts_ms)
        self._last_ts = ts_ms
        return values

    # ---------------------------------------------------------------- shared parts

    def _battery(self, ts_ms: int) -> float:
        days = (self._battery_age_days + ts_ms / _DAY_MS) % _BATTERY_LIFE_DAYS
        return self._battery_v0 - _BATTERY_DECAY_V_DAY * days + self.noise("battery_v")

    def _rain_and_lag(self, ts_ms: int) -> tuple[float, float]:
        """District rainfall now and the slowly following level response."""
        rain = district_rain_mm_h(self._district_seed, ts_ms)
        if self._last_ts is None:
            self._level_lag = rain
        else:
            dt = max(0.0, (ts_ms - self._last_ts) / 1000.0)
            self._level_lag += (rain - self._level_lag) * (1.0 - math.exp(-dt / _LEVEL_LAG_S))
        return rain, self._level_lag

    # ---------------------------------------------------------------- asset types

    def _flood_gauge(self, ts_ms: int) -> dict[str, MetricValue]:
        rain, lag = self._rain_and_lag(ts_ms)
        level = 0.6 + 0.8 * self._base + 0.04 * lag + self.noise("water_level_m")
        return {
            "water_level_m": max(0.0, level),
            "rainfall_mm_h": max(0.0, rain + (self.noise("rainfall_mm_h") if rain else 0.0)),
            "battery_v": self._battery(ts_ms),
        }

    def _water_main(self, ts_ms: int) -> dict[str, MetricValue]:
        demand = water_demand(hour_of_day(ts_ms))
        return {
            "pressure_bar": 3.8 + self._base - 0.9 * demand + self.noise("pressure_bar"),
            "flow_l_s": max(0.0, (20 + 40 * self._base) * (0.4 + demand) + self.noise("flow_l_s")),
            "battery_v": self._battery(ts_ms),
        }

    def _bridge(self, ts_ms: int) -> dict[str, MetricValue]:
        hour = hour_of_day(ts_ms)
        temp = 11.0 + 7.0 * sun(hour) + self.noise("temperature_c")
        load = traffic(hour)
        return {
            "strain_ue": 100
            + 200 * self._base
            + 9 * (temp - 11)
            + 80 * load
            + self.noise("strain_ue"),
            "vibration_mm_s": 0.4 + 3.5 * load + abs(self.noise("vibration_mm_s")),
            "temperature_c": temp,
        }

    def _manhole(self, ts_ms: int) -> dict[str, MetricValue]:
        rain, lag = self._rain_and_lag(ts_ms)
        return {
            "methane_pct_lel": min(5.0, abs(0.8 + self.noise("methane_pct_lel"))),
            "h2s_ppm": min(5.0, abs(1.0 + 2 * self.noise("h2s_ppm"))),
            "water_level_m": max(0.0, 0.05 + 0.2 * self._base + 0.01 * lag + 0.01 * rain),
            "battery_v": self._battery(ts_ms),
        }

    def _air_quality(self, ts_ms: int) -> dict[str, MetricValue]:
        hour = hour_of_day(ts_ms)
        load = traffic(hour)
        pm25 = max(0.5, 6 + 6 * self._base + 14 * load + self.noise("pm2_5_ug_m3"))
        return {
            "pm2_5_ug_m3": pm25,
            "pm10_ug_m3": max(1.0, 1.7 * pm25 + self.noise("pm10_ug_m3")),
            "no2_ug_m3": max(0.0, 12 + 45 * load + self.noise("no2_ug_m3")),
            "temperature_c": 11.0 + 7.0 * sun(hour) + self.noise("temperature_c"),
            "humidity_pct": min(100.0, max(5.0, 72 - 18 * sun(hour) + self.noise("humidity_pct"))),
        }

    def _streetlight(self, ts_ms: int) -> dict[str, MetricValue]:
        lit = sun(hour_of_day(ts_ms)) < -0.15
        rated = 60 + 30 * self._base
        return {
            "power_w": max(0.0, rated + self.noise("power_w")) if lit else 0.6,
            "voltage_v": 230 + self.noise("voltage_v"),
            "lamp_on": lit,
        }

    def _traffic_counter(self, ts_ms: int) -> dict[str, MetricValue]:
        load = traffic(hour_of_day(ts_ms))
        mean = (10 + 30 * self._base) * load
        limit = 50.0 if self._base < 0.6 else 80.0
        return {
            "vehicles_per_min": max(0, round(self.rng.gauss(mean, math.sqrt(mean + 1)))),
            "avg_speed_kmh": max(
                3.0, limit * (1 - 0.45 * load * load) + self.noise("avg_speed_kmh")
            ),
        }

    def _generic(self, ts_ms: int) -> dict[str, MetricValue]:
        return {"value": self._base + self.noise("value"), "battery_v": self._battery(ts_ms)}


def rounded(values: dict[str, MetricValue]) -> dict[str, MetricValue]:
    """Values at the resolution a real sensor reports (keeps payloads short)."""
    out: dict[str, MetricValue] = {}
    for name, value in values.items():
        if isinstance(value, bool):
            out[name] = value
        else:
            digits = DECIMALS.get(name, 2)
            out[name] = round(value) if digits == 0 else round(float(value), digits)
    return out
