"""Hot list endpoints build their JSON by hand: it must match their declared response models."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, TypeAdapter

from hub.api.schemas import AlertOut, DeviceSummary, DistrictStatus, TelemetryOut
from hub.messages import Reading
from tests.unit.api.conftest import NOW_MS, Api


def _exact(model: type[BaseModel], item: dict[str, Any]) -> None:
    """``item`` validates strictly against ``model`` and has exactly its fields."""
    model.model_validate(item, strict=True)
    assert set(item) == set(model.model_fields)


async def test_hand_built_lists_match_their_models(api: Api) -> None:
    """Devices, alerts, board, district status and telemetry validate strictly, no extra keys."""
    api.alerts.fire("d07", "manhole", "mh-d07-1")
    await api.store.write(
        [
            Reading("d03", "flood_gauge", "fg-d03-1", NOW_MS - i * 60_000, {"water_level_m": 1.0})
            for i in range(1, 5)
        ]
    )
    h = api.auth("admin")
    for device in api.client.get("/api/v1/devices", headers=h).json():
        _exact(DeviceSummary, device)
    alerts = api.client.get("/api/v1/alerts", headers=h).json()
    assert alerts
    for alert in alerts:
        _exact(AlertOut, alert)
    board = api.client.get("/api/v1/districts", headers=h).json()
    TypeAdapter(list[DistrictStatus]).validate_python(board, strict=True)
    for row in board:
        _exact(DistrictStatus, row)
    d07 = api.client.get("/api/v1/districts/d07/status", headers=h).json()
    _exact(DistrictStatus, d07)
    assert d07["worst"] != "ok"
    telemetry = api.client.get(
        "/api/v1/devices/fg-d03-1/telemetry?start=-1h&metric=water_level_m", headers=h
    ).json()
    _exact(TelemetryOut, telemetry)
    assert len(telemetry["points"]) == 4


def test_board_counts_come_from_the_registry(api: Api) -> None:
    """The board's figures equal what the registry holds, cell by cell and per district."""
    h = api.auth("admin")
    d07 = api.client.get("/api/v1/districts/d07/status", headers=h).json()
    cells = {c["asset_type"]: c for c in d07["asset_types"]}
    assert (d07["devices"], d07["online"], d07["offline"], d07["stale"]) == (3, 2, 1, 1)
    assert cells["air_quality"]["offline"] == 1
    assert cells["air_quality"]["stale"] == 1
    assert cells["manhole"]["online"] == 1
    assert d07["unknown"] == 0
