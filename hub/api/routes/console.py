"""What the operations console needs beyond the resource routes (docs/console.md).

- ``GET /console/config``: the key, what its role may do, map settings and the
  catalog's metrics with units (the console offers nothing the key cannot use);
- ``GET /console/districts.geojson``: the city's district outlines inside the scope;
- ``GET /console/map``: every device in scope with its location and map state;
- ``GET /console/devices/{id}/thresholds``: fixed levels of the rules matching it;
- ``GET /console/devices/{id}/live``: the device's readings as they arrive (SSE);
- ``POST /console/silences/preview``: the open alerts a silence would mute.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path as FilePath
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Request, Response, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from hub.api.auth import Principal
from hub.api.context import ApiContext
from hub.api.deps import Ctx, Operator, Viewer, errors, json_response, set_rows
from hub.api.routes.alerts import alert_dict
from hub.api.routes.devices import device_in_scope
from hub.api.routing import ApiRoute
from hub.api.schemas import DEVICE_ID_PATTERN, AlertOut, ErrorOut, _In
from hub.api.visibility import Visibility
from hub.messages import Severity
from hub.ports import AlertFilter, DeviceFilter, DeviceInfo

router = APIRouter(prefix="/console", tags=["console"], route_class=ApiRoute)

#: Devices one map request returns; a city beyond this needs tiles of devices, not a list.
MAX_MAP_DEVICES = 200_000
#: Active alerts looked at to colour the map (as the board does).
MAX_ACTIVE_ALERTS = 20_000
#: Largest district outlines file served (a city's districts are a few hundred KiB).
MAX_OUTLINES_BYTES = 20 * 1024 * 1024
#: How often the live view of a device looks for a new reading (the registry's latest).
LIVE_POLL_S = 1.0
#: Seconds without a new reading after which the live view sends a keepalive comment.
LIVE_KEEPALIVE_S = 15.0

DeviceId = Annotated[str, Path(pattern=DEVICE_ID_PATTERN)]
#: A device's state on the map: an open alert's severity wins, then the link state.
MapState = Literal["emergency", "critical", "warning", "info", "offline", "stale", "never", "ok"]


class Permissions(BaseModel):
    """What the key's role lets it do; the console shows no control for the rest."""

    acknowledge: bool
    resolve: bool
    comment: bool
    silence: bool
    dead_letters: bool
    rules: bool
    restricted_metrics: bool
    #: Change citizen reports' status, merge them, read a reporter's contact (audited).
    reports: bool = False
    #: The open-data page: the policy in effect and the release log.
    open_data: bool = False


class MapConfig(BaseModel):
    """Map settings: raster tiles (none: outlines only) and whether outlines exist."""

    tile_url: str
    tile_attribution: str
    tile_max_zoom: int
    districts: bool


class MetricInfo(BaseModel):
    """One catalog metric: unit, English description, plausible range, readable by the key."""

    unit: str
    description: str
    type: str
    min: float | None
    max: float | None
    readable: bool


class AssetTypeInfo(BaseModel):
    """One catalog entry."""

    description: str
    interval_s: float
    metrics: dict[str, MetricInfo]


class ConsoleConfig(BaseModel):
    """Everything the console needs once at start."""

    key: dict[str, Any]
    can: Permissions
    map: MapConfig
    default_language: str
    catalog: dict[str, AssetTypeInfo]
    now_ms: int


class MapOut(BaseModel):
    """Devices as ``[device_id, district, asset_type, lat, lon, state]`` rows, and the
    worst open alert per district (``ok`` when none)."""

    devices: list[list[str | float | None]]
    districts: dict[str, str]
    now_ms: int


class ThresholdOut(BaseModel):
    """A fixed level a rule compares a metric of the device against."""

    rule_id: str
    metric: str
    op: str
    value: float
    clear: float | None
    severity: str


class PreviewIn(_In):
    """The matchers of a silence about to be created."""

    matchers: Annotated[
        dict[
            Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")],
            Annotated[str, Field(min_length=1, max_length=256)],
        ],
        Field(min_length=1, max_length=20),
    ]


# --------------------------------------------------------------------------- config


@router.get("/config", response_model=ConsoleConfig)
async def config(request: Request, ctx: Ctx, who: Viewer) -> ConsoleConfig:
    """The key, what it may do, the map settings and the catalog (metrics with units)."""
    settings = ctx.settings.console
    catalog: dict[str, AssetTypeInfo] = {}
    for asset_type in ctx.catalog.asset_types():
        spec = ctx.catalog.spec(asset_type)
        if spec is None:
            continue
        catalog[asset_type] = AssetTypeInfo(
            description=spec.description,
            interval_s=spec.interval,
            metrics={
                name: MetricInfo(
                    unit=m.unit,
                    description=m.description,
                    type=m.type,
                    min=m.min,
                    max=m.max,
                    readable=who.may_read(m.classification),
                )
                for name, m in spec.metrics.items()
            },
        )
    set_rows(request, 1)
    return ConsoleConfig(
        key={"id": who.id, "name": who.name, "role": who.role, "scopes": who.key.scopes_dict()},
        can=Permissions(
            acknowledge=who.has_role("operator"),
            resolve=who.has_role("operator"),
            comment=who.has_role("operator"),
            silence=who.has_role("operator"),
            dead_letters=who.has_role("operator"),
            rules=who.has_role("rule_author"),
            restricted_metrics=who.may_read("restricted"),
            reports=who.has_role("operator"),
            open_data=who.has_role("operator") and ctx.opendata is not None,
        ),
        map=MapConfig(
            tile_url=settings.tile_url,
            tile_attribution=settings.tile_attribution,
            tile_max_zoom=settings.tile_max_zoom,
            districts=settings.districts_geojson is not None,
        ),
        default_language=settings.default_language,
        catalog=catalog,
        now_ms=ctx.clock.now_ms(),
    )


# --------------------------------------------------------------------------- outlines

_outlines_cache: dict[FilePath, tuple[float, dict[str, Any]]] = {}


def _parse_outlines(path: FilePath) -> dict[str, Any]:
    """The outlines file as a FeatureCollection; OSError or ValueError saying what is wrong."""
    if path.stat().st_size > MAX_OUTLINES_BYTES:
        raise ValueError(f"larger than {MAX_OUTLINES_BYTES // (1024 * 1024)} MiB")
    document = json.loads(path.read_bytes())
    if (
        not isinstance(document, dict)
        or document.get("type") != "FeatureCollection"
        or not isinstance(document.get("features"), list)
    ):
        raise ValueError("not a GeoJSON FeatureCollection with a list of features")
    return document


def _load_outlines(path: FilePath) -> dict[str, Any]:
    """The outlines file, parsed once per modification; 503 with the reason when unusable."""
    try:
        mtime = path.stat().st_mtime
        cached = _outlines_cache.get(path)
        if cached is not None and cached[0] == mtime:
            return cached[1]
        document = _parse_outlines(path)
    except (OSError, ValueError) as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"district outlines ({path.name}) cannot be used: {exc}",
        ) from None
    _outlines_cache.clear()
    _outlines_cache[path] = (mtime, document)
    return document


def _feature_district(feature: Any) -> str | None:
    if not isinstance(feature, dict):
        return None
    props = feature.get("properties")
    district = props.get("district") if isinstance(props, dict) else None
    return district if isinstance(district, str) else None


@router.get(
    "/districts.geojson",
    response_model=dict[str, Any],
    responses={
        200: {"content": {"application/geo+json": {}}, "description": "GeoJSON"},
        **errors(404),
        503: {"model": ErrorOut, "description": "The configured file cannot be used"},
    },
)
async def districts_geojson(request: Request, ctx: Ctx, who: Viewer) -> Response:
    """The district outlines (``HUB_CONSOLE__DISTRICTS_GEOJSON``) of the districts in scope."""
    path = ctx.settings.console.districts_geojson
    if path is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no district outlines are configured")
    document = _load_outlines(path)
    districts = who.scope.districts
    features = [
        f
        for f in document["features"]
        if (d := _feature_district(f)) is not None and (districts is None or d in districts)
    ]
    set_rows(request, len(features))
    body = json.dumps({"type": "FeatureCollection", "features": features}, separators=(",", ":"))
    return Response(body, media_type="application/geo+json")


# --------------------------------------------------------------------------- map

_SEVERITY_STATE: dict[Severity, MapState] = {
    Severity.INFO: "info",
    Severity.WARNING: "warning",
    Severity.CRITICAL: "critical",
    Severity.EMERGENCY: "emergency",
}


def _device_state(device: DeviceInfo, worst: Severity | None) -> MapState:
    if worst is not None:
        return _SEVERITY_STATE[worst]
    if device.status == "offline":
        return "offline"
    if device.stale:
        return "stale"
    if device.last_seen_ms is None:
        return "never"
    return "ok"


def _raise(worst: dict[str, Severity], key: str, level: Severity) -> None:
    current = worst.get(key)
    if current is None or level > current:
        worst[key] = level


def _worst_alerts(
    ctx: ApiContext, who: Principal
) -> tuple[dict[str, Severity], dict[str, Severity]]:
    """Worst open alert per device (source) and per district, inside the key's scope."""
    by_device: dict[str, Severity] = {}
    by_district: dict[str, Severity] = {}
    flt = AlertFilter(state="active", limit=MAX_ACTIVE_ALERTS)
    for alert in ctx.alerts.list_alerts(flt, who.scope):
        if alert.status == "resolved" or not who.allows(alert.district, alert.asset_type):
            continue
        try:
            level = Severity.parse(alert.severity)
        except ValueError:
            continue
        if alert.source != "_area":
            _raise(by_device, alert.source, level)
        _raise(by_district, alert.district, level)
    return by_device, by_district


@router.get("/map", response_model=MapOut)
async def device_map(request: Request, ctx: Ctx, who: Viewer) -> Response:
    """Every device in scope with its location and state, and each district's worst alert."""
    by_device, by_district = _worst_alerts(ctx, who)
    devices = ctx.registry.list_devices(DeviceFilter(limit=MAX_MAP_DEVICES), who.scope)
    rows = [
        [
            d.device_id,
            d.district,
            d.asset_type,
            d.latitude,
            d.longitude,
            _device_state(d, by_device.get(d.device_id)),
        ]
        for d in devices
        if who.allows(d.district, d.asset_type)
    ]
    districts = dict.fromkeys(ctx.registry.districts(who.scope), "ok")
    districts.update({d: _SEVERITY_STATE[s] for d, s in by_district.items()})
    set_rows(request, len(rows))
    return json_response({"devices": rows, "districts": districts, "now_ms": ctx.clock.now_ms()})


# --------------------------------------------------------------------------- device


@router.get(
    "/devices/{device_id}/thresholds", response_model=list[ThresholdOut], responses=errors(404)
)
async def thresholds(
    request: Request, ctx: Ctx, who: Viewer, device_id: DeviceId
) -> list[ThresholdOut]:
    """Fixed levels of the rules matching the device, for metrics the key may read."""
    device = device_in_scope(ctx, who, device_id)
    visible = Visibility(ctx.catalog, who)
    lines = [
        ThresholdOut(
            rule_id=t.rule_id,
            metric=t.metric,
            op=t.op,
            value=t.value,
            clear=t.clear,
            severity=t.severity,
        )
        for t in ctx.rules.thresholds(device.district, device.asset_type, device.device_id)
        if visible.may_read(device.asset_type, t.metric)
    ]
    set_rows(request, len(lines))
    return lines


def _readable_latest(ctx: ApiContext, who: Principal, device: DeviceInfo) -> dict[str, Any]:
    """The device's latest values the key may read, and which were withheld (the policy of
    hub.api.visibility: withheld values are named, never silently dropped)."""
    values, withheld = Visibility(ctx.catalog, who).latest(device.asset_type, device.latest)
    return {"metrics": values, "withheld_metrics": withheld}


async def live_readings(
    ctx: ApiContext,
    who: Principal,
    device_id: str,
    *,
    poll_s: float = LIVE_POLL_S,
    keepalive_s: float = LIVE_KEEPALIVE_S,
) -> AsyncIterator[str]:
    """SSE body: ``event: reading`` whenever the device's latest reading changes.

    It reads the registry's latest values (a dictionary read per poll), not the
    journal: readings that arrive faster than ``poll_s`` show as their latest.
    """
    yield "retry: 3000\n: connected\n\n"
    last_ts: int | None = None
    quiet = 0.0
    while True:
        device = ctx.registry.get_device(device_id)
        if device is None:
            yield "event: gone\ndata: {}\n\n"
            return
        ts = device.latest_ts_ms
        if ts is not None and ts != last_ts:
            last_ts = ts
            quiet = 0.0
            data = {"ts_ms": ts, **_readable_latest(ctx, who, device)}
            yield f"event: reading\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"
        elif quiet >= keepalive_s:
            quiet = 0.0
            yield ": keepalive\n\n"
        await asyncio.sleep(poll_s)
        quiet += poll_s


@router.get(
    "/devices/{device_id}/live",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "SSE stream"},
        **errors(404),
    },
)
async def live(request: Request, ctx: Ctx, who: Viewer, device_id: DeviceId) -> StreamingResponse:
    """The device's readings as they arrive (its latest values, metrics the key may read)."""
    device_in_scope(ctx, who, device_id)
    set_rows(request, 0)
    return StreamingResponse(
        live_readings(ctx, who, device_id),
        media_type="text/event-stream",
        headers={"X-Accel-Buffering": "no"},
    )


# --------------------------------------------------------------------------- silences


@router.post("/silences/preview", response_model=list[AlertOut])
async def silence_preview(request: Request, ctx: Ctx, who: Operator, body: PreviewIn) -> Response:
    """The open alerts inside the key's scope that a silence with these matchers would mute."""
    visible = Visibility(ctx.catalog, who)
    out = [
        alert_dict(*visible.alert(a))
        for a in ctx.alerts.silence_preview(body.matchers, who.scope)
        if who.allows(a.district, a.asset_type)
    ]
    set_rows(request, len(out))
    return json_response(out)
