"""Districts: the status board (devices per asset type, active alerts, worst condition)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Request, Response, status

from hub.api.auth import Principal
from hub.api.context import ApiContext
from hub.api.deps import Ctx, Viewer, errors, json_response, set_rows
from hub.api.routing import ApiRoute
from hub.api.schemas import DISTRICT_PATTERN, Condition, DistrictStatus
from hub.messages import Severity
from hub.ports import AlertFilter, AlertRecord, DeviceCounts

router = APIRouter(tags=["districts"], route_class=ApiRoute)

#: Active alerts counted per request; a city with more has a bigger problem than this board.
MAX_ACTIVE_ALERTS = 20_000


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


def _area(counts: DeviceCounts, alerts: list[AlertRecord]) -> dict[str, Any]:
    by_severity = Counter(a.severity for a in alerts)
    return {
        "devices": counts.devices,
        "online": counts.online,
        "offline": counts.offline,
        "unknown": counts.unknown,
        "stale": counts.stale,
        "active_alerts": dict(by_severity),
        "worst": _worst(by_severity),
    }


def _sum(cells: Iterable[DeviceCounts]) -> DeviceCounts:
    total = DeviceCounts()
    for c in cells:
        total = DeviceCounts(
            total.devices + c.devices,
            total.online + c.online,
            total.offline + c.offline,
            total.stale + c.stale,
        )
    return total


def board(ctx: ApiContext, who: Principal, district: str | None) -> list[dict[str, Any]]:
    """Status of every district in scope (or of ``district`` only), shaped as ``DistrictStatus``."""
    # The registry keeps these counts up to date; nothing here walks the devices.
    devices: dict[str, dict[str, DeviceCounts]] = defaultdict(dict)
    alerts: dict[str, dict[str, list[AlertRecord]]] = defaultdict(lambda: defaultdict(list))
    for (name, asset_type), counts in ctx.registry.device_counts(who.scope, district).items():
        if who.allows(name, asset_type) and district in (None, name):
            devices[name][asset_type] = counts
    for alert in _active_alerts(ctx, who, district):
        alerts[alert.district][alert.asset_type].append(alert)
    out: list[dict[str, Any]] = []
    empty = DeviceCounts()
    for name in sorted(set(devices) | set(alerts)):
        cells = [
            {
                "asset_type": asset_type,
                **_area(devices[name].get(asset_type, empty), alerts[name][asset_type]),
            }
            for asset_type in sorted(set(devices[name]) | set(alerts[name]))
        ]
        all_alerts = [a for group in alerts[name].values() for a in group]
        out.append(
            {
                "district": name,
                "asset_types": cells,
                **_area(_sum(devices[name].values()), all_alerts),
            }
        )
    return out


@router.get("/districts", response_model=list[DistrictStatus])
async def list_districts(request: Request, ctx: Ctx, who: Viewer) -> Response:
    """Every district in the key's scope with its status (the dashboard's board)."""
    out = board(ctx, who, None)
    set_rows(request, len(out))
    return json_response(out)


@router.get("/districts/{district}/status", response_model=DistrictStatus, responses=errors(404))
async def district_status(
    request: Request,
    ctx: Ctx,
    who: Viewer,
    district: Annotated[str, Path(pattern=DISTRICT_PATTERN)],
) -> Response:
    """Devices online/offline/stale per asset type, active alerts by severity, worst condition."""
    if who.scope.districts is not None and district not in who.scope.districts:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, f"district {district!r} is outside this key's scope"
        )
    found = board(ctx, who, district)
    if not found:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no district {district!r}")
    set_rows(request, found[0]["devices"])
    return json_response(found[0])
