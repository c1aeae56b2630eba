"""Which telemetry store the settings ask for (CONTRACT §5 ``HUB_STORE__BACKEND``)."""

from __future__ import annotations

from hub.clock import Clock
from hub.settings import Settings
from hub.store.base import TelemetryStore
from hub.store.embedded import TELEMETRY_DB, EmbeddedStore
from hub.store.influx import InfluxStore


def make_store(settings: Settings, clock: Clock) -> TelemetryStore:
    """InfluxDB (1.x, 2.x or 3.x per ``HUB_INFLUX__API``) or the embedded SQLite store."""
    if settings.store.backend == "influxdb":
        return InfluxStore(settings.influx, clock=clock)
    return EmbeddedStore(settings.data_dir / TELEMETRY_DB)
