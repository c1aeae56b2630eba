"""Devices: list and detail (viewer), provisioning (admin)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError

from hub.api.auth import Principal
from hub.api.context import ApiContext
from hub.api.deps import Admin, Ctx, Viewer, errors, json_response, set_rows
from hub.api.routes.reports import hint_dict
from hub.api.routing import ApiRoute
from hub.api.schemas import (
    DEVICE_ID_PATTERN,
    DISTRICT_PATTERN,
    DeviceCreate,
    DeviceDetail,
    DeviceStatus,
    DeviceSummary,
    DeviceUpdate,
    ReportHintOut,
)
from hub.api.visibility import Visibility
from hub.ports import DeviceFilter, DeviceInfo

router = APIRouter(tags=["devices"], route_class=ApiRoute)

#: Most devices one list request returns (page with ``offset``).
MAX_PAGE = 1000

DeviceId = Annotated[str, Path(pattern=DEVICE_ID_PATTERN)]


def summary_dict(device: DeviceInfo) -> dict[str, Any]:
    """The list view of a device (the fields of ``DeviceSummary``), as plain JSON."""
    return {
        "device_id": device.device_id,
        "district": device.district,
        "asset_type": device.asset_type,
        "status": device.status,
        "last_seen_ms": device.last_seen_ms,
        "stale": device.stale,
        "provisioned": device.provisioned,
    }


def summary(device: DeviceInfo) -> DeviceSummary:
    """The list view of a device."""
    return DeviceSummary(**summary_dict(device))


def detail(ctx: ApiContext, who: Principal, device: DeviceInfo) -> DeviceDetail:
    """The detail view, without the latest values of metrics the key may not read."""
    latest, withheld = Visibility(ctx.catalog, who).latest(device.asset_type, device.latest)
    return DeviceDetail(
        **summary(device).model_dump(),
        latest=latest,
        latest_ts_ms=device.latest_ts_ms,
        withheld_metrics=withheld,
        seq_gaps=device.seq_gaps,
        seq_duplicates=device.seq_duplicates,
        latitude=device.latitude,
        longitude=device.longitude,
        metadata=dict(device.metadata),
        report_hints=[
            ReportHintOut(**hint_dict(h)) for h in ctx.reports.hints(who.scope, device.device_id)
        ],
    )


def device_in_scope(ctx: ApiContext, who: Principal, device_id: str) -> DeviceInfo:
    """The device, or 404 when unknown and 403 when outside the key's scope."""
    device = ctx.registry.get_device(device_id)
    if device is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no device {device_id!r}")
    who.require_scope(device.district, device.asset_type, f"device {device_id!r}")
    return device


@router.get("/devices", response_model=list[DeviceSummary])
async def list_devices(
    request: Request,
    ctx: Ctx,
    who: Viewer,
    district: Annotated[str | None, Query(pattern=DISTRICT_PATTERN)] = None,
    asset_type: Annotated[str | None, Query(pattern=DISTRICT_PATTERN)] = None,
    status: DeviceStatus | None = None,
    stale: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> Response:
    """Devices inside the key's scope matching the filters, by device id."""
    flt = DeviceFilter(
        district=district,
        asset_type=asset_type,
        status=status,
        stale=stale,
        limit=limit,
        offset=offset,
    )
    devices = [
        summary_dict(d)
        for d in ctx.registry.list_devices(flt, who.scope)
        if who.allows(d.district, d.asset_type)
    ]
    set_rows(request, len(devices))
    return json_response(devices)


@router.get("/devices/{device_id}", response_model=DeviceDetail, responses=errors(404))
async def get_device(request: Request, ctx: Ctx, who: Viewer, device_id: DeviceId) -> DeviceDetail:
    """One device: status, last seen, latest values, seq gaps, location."""
    device = device_in_scope(ctx, who, device_id)
    set_rows(request, 1)
    return detail(ctx, who, device)


def known_asset_type(ctx: ApiContext, asset_type: str) -> None:
    """422 unless ``asset_type`` is in the device catalog (as ``hub devices import`` checks)."""
    if ctx.catalog.spec(asset_type) is None:
        known = ", ".join(ctx.catalog.asset_types())
        raise RequestValidationError(
            [
                {
                    "type": "asset_type_unknown",
                    "loc": ("body", "asset_type"),
                    "msg": f"{asset_type!r} is not in the device catalog; known: {known}",
                    "input": asset_type,
                }
            ]
        )


@router.post(
    "/devices",
    response_model=DeviceDetail,
    status_code=status.HTTP_201_CREATED,
    responses=errors(409),
)
async def create_device(request: Request, ctx: Ctx, who: Admin, body: DeviceCreate) -> DeviceDetail:
    """Provision a new device (409 when the id is already known)."""
    known_asset_type(ctx, body.asset_type)
    who.require_scope(body.district, body.asset_type, f"district {body.district!r}")
    if ctx.registry.get_device(body.device_id) is not None:
        raise HTTPException(status.HTTP_409_CONFLICT, f"device {body.device_id!r} exists")
    device = ctx.registry.upsert_device(
        body.device_id, body.district, body.asset_type, body.latitude, body.longitude, body.metadata
    )
    set_rows(request, 1)
    return detail(ctx, who, device)


@router.put("/devices/{device_id}", response_model=DeviceDetail)
async def update_device(
    request: Request, ctx: Ctx, who: Admin, device_id: DeviceId, body: DeviceUpdate
) -> DeviceDetail:
    """Provision or update a device."""
    known_asset_type(ctx, body.asset_type)
    existing = ctx.registry.get_device(device_id)
    if existing is not None:
        who.require_scope(existing.district, existing.asset_type, f"device {device_id!r}")
    who.require_scope(body.district, body.asset_type, f"district {body.district!r}")
    device = ctx.registry.upsert_device(
        device_id, body.district, body.asset_type, body.latitude, body.longitude, body.metadata
    )
    set_rows(request, 1)
    return detail(ctx, who, device)


@router.delete(
    "/devices/{device_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=errors(404),
)
async def delete_device(request: Request, ctx: Ctx, who: Admin, device_id: DeviceId) -> Response:
    """Remove a device from the registry (its stored telemetry stays)."""
    device_in_scope(ctx, who, device_id)
    if not ctx.registry.delete_device(device_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no device {device_id!r}")
    set_rows(request, 1)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
