"""Districts: the status board (devices per asset type, active alerts, worst condition)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Request, status

from hub.api.auth import Principal
from hub.api.context import ApiContext
from hub.api.deps import Ctx, Viewer, set_rows
from hub.api.schemas import (
    DISTRICT_PATTERN,
    AreaStatus,
    AssetTypeStatus,
    Condition,
    DistrictStatus,
)
from hub.messages import Severity
from hub.ports import AlertFilter, AlertRecord, DeviceFilter, DeviceInfo

router = APIRouter(tags=["districts"])

#: Registry page size while counting devices (the port bounds one call).
DEVICE_PAGE = 5000
#: Active alerts counted per request; a city with more has a bigger problem than this board.
MAX_ACTIVE_ALERTS = 20_000


def _devices(ctx: ApiContext, who: Principal, district: str | None) -> list[DeviceInfo]:
    out: list[DeviceInfo] = []
    offset = 0
    while True:
        page = ctx.registry.list_devices(
            DeviceFilter(district=district, limit=DEVICE_PAGE, offset=offset), who.scope
        )
        out.extend(d for d in page if who.allows(d.district, d.asset_type))
        if len(page) < DEVICE_PAGE:
            return out
        offset += DEVICE_PAGE


def _active_alerts(ctx: ApiContext, who: Principal, district: str | None) -> list[AlertRecord]:
    flt = AlertFilter(state="active", district=district, limit=MAX_ACTIVE_ALERTS)
    return [
        a
        for a in ctx.alerts.list_alerts(flt, who.scope)
        if who.allows(a.district, a.asset_type) and a.status != "resolved"
    ]


_CONDITIONS: dict[Severity, Condition] = {
    Severity.INFO: "info",
    Severity.WARNING: "warning",
    Severity.CRITICAL: "critical",
    Severity.EMERGENCY: "emergency",
}


def _worst(severities: Iterable[str]) -> Condition:
    worst: Severity | None = None
    for name in severities:
        try:
            level = Severity.parse(name)
        except ValueError:
            continue
        worst = level if worst is None or level > worst else worst
    return "ok" if worst is None else _CONDITIONS[worst]


def _area(devices: list[DeviceInfo], alerts: list[AlertRecord]) -> dict[str, Any]:
    statuses = Counter(d.status for d in devices)
    by_severity = Counter(a.severity for a in alerts)
    area = AreaStatus(
        devices=len(devices),
        online=statuses.get("online", 0),
        offline=statuses.get("offline", 0),
        unknown=len(devices) - statuses.get("online", 0) - statuses.get("offline", 0),
        stale=sum(1 for d in devices if d.stale),
        active_alerts=dict(by_severity),
        worst=_worst(by_severity),
    )
    return area.model_dump()


def board(ctx: ApiContext, who: Principal, district: str | None) -> list[DistrictStatus]:
    """Status of every district in scope (or of ``district`` only)."""
    devices: dict[str, dict[str, list[DeviceInfo]]] = defaultdict(lambda: defaultdict(list))
    alerts: dict[str, dict[str, list[AlertRecord]]] = defaultdict(lambda: defaultdict(list))
    for device in _devices(ctx, who, district):
        devices[device.district][device.asset_type].append(device)
    for alert in _active_alerts(ctx, who, district):
        alerts[alert.district][alert.asset_type].append(alert)
    out: list[DistrictStatus] = []
    for name in sorted(set(devices) | set(alerts)):
        cells = [
            AssetTypeStatus(
                asset_type=asset_type,
                **_area(devices[name][asset_type], alerts[name][asset_type]),
            )
            for asset_type in sorted(set(devices[name]) | set(alerts[name]))
        ]
        all_devices = [d for group in devices[name].values() for d in group]
        all_alerts = [a for group in alerts[name].values() for a in group]
        out.append(
            DistrictStatus(
                district=name,
                asset_types=cells,
                **_area(all_devices, all_alerts),
            )
        )
    return out


@router.get("/districts", response_model=list[DistrictStatus])
async def list_districts(request: Request, ctx: Ctx, who: Viewer) -> list[DistrictStatus]:
    """Every district in the key's scope with its status (the dashboard's board)."""
    out = board(ctx, who, None)
    set_rows(request, len(out))
    return out


@router.get("/districts/{district}/status", response_model=DistrictStatus)
async def district_status(
    request: Request,
    ctx: Ctx,
    who: Viewer,
    district: Annotated[str, Path(pattern=DISTRICT_PATTERN)],
) -> DistrictStatus:
    """Devices online/offline/stale per asset type, active alerts by severity, worst condition."""
    if who.scope.districts is not None and district not in who.scope.districts:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, f"district {district!r} is outside this key's scope"
        )
    found = board(ctx, who, district)
    if not found:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no district {district!r}")
    set_rows(request, found[0].devices)
    return found[0]
