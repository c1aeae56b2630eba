"""Telemetry through the API answers the same from InfluxDB and from the embedded store."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import httpx
import pytest

from hub.clock import FakeClock
from hub.messages import Reading
from hub.settings import InfluxSettings
from hub.store.base import TelemetryStore
from hub.store.embedded import EmbeddedStore
from hub.store.influx import InfluxStore
from tests.conftest import Names
from tests.services import InfluxDB1
from tests.unit.api.conftest import NOW_MS, make_api

pytestmark = pytest.mark.integration

MINUTE = 60_000


def _readings() -> list[Reading]:
    rng = random.Random(7)
    out = []
    for i in range(24 * 60):  # one day of minute readings, with a few gaps
        if rng.random() < 0.05:
            continue
        out.append(
            Reading(
                "d03",
                "flood_gauge",
                "fg-d03-1",
                NOW_MS - (24 * 60 - i) * MINUTE,
                {"water_level_m": round(rng.uniform(0.5, 3.5), 3), "battery_v": 3.6 - i / 10_000},
                seq=i,
            )
        )
    return out


QUERIES: list[dict[str, str]] = [
    {"start": "-1h", "metric": "water_level_m"},
    *(
        {"start": "-1d", "every": "15m", "agg": agg}
        for agg in ("mean", "min", "max", "last", "count")
    ),
]


async def _answers(store: TelemetryStore, tmp_path: Path) -> list[list[Any]]:
    """Write the day of readings to ``store`` and ask the API every query."""
    await store.open()
    try:
        await store.write(_readings())
        apis = make_api(tmp_path, store=store)
        api = next(apis)
        out = []
        transport = httpx.ASGITransport(app=api.client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
            for params in QUERIES:
                response = await client.get(
                    "/api/v1/devices/fg-d03-1/telemetry", params=params, headers=api.auth("viewer")
                )
                assert response.status_code == 200, response.text
                out.append(
                    [
                        (
                            p["ts_ms"],
                            p["metric"],
                            None if p["value"] is None else round(p["value"], 6),
                        )
                        for p in response.json()["points"]
                    ]
                )
        apis.close()
        return out
    finally:
        await store.close()


async def test_same_points_and_aggregates_from_influxdb_and_embedded(
    influxdb: InfluxDB1, names: Names, tmp_path: Path
) -> None:
    """Raw points and one-day 15-minute mean/min/max/last/count agree between both stores."""
    embedded = await _answers(EmbeddedStore(tmp_path / "e" / "telemetry.db"), tmp_path / "e")
    influx = InfluxStore(
        InfluxSettings(url=influxdb.url, database=names.database()), clock=FakeClock(NOW_MS)
    )
    from_influx = await _answers(influx, tmp_path / "i")
    assert len(embedded[0]) > 50
    assert all(len(points) >= 2 * 95 for points in embedded[1:])
    for params, mine, theirs in zip(QUERIES, embedded, from_influx, strict=True):
        assert mine == theirs, params
