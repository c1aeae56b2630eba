"""Indicators (CONTRACT §8): definitions, values per period (JSON or CSV), drill-down.

A key scoped to districts or asset types sees the values of its scope only: points of
other districts are never computed for it, and naming one is 403.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response, status

from hub.api.auth import Principal
from hub.api.context import ApiContext
from hub.api.deps import Ctx, Viewer, errors, json_response, set_district, set_rows
from hub.api.routes.telemetry import INSTANT_PATTERN
from hub.api.routing import ApiRoute
from hub.api.schemas import (
    DISTRICT_PATTERN,
    IndicatorDevicesOut,
    IndicatorOut,
    IndicatorSeriesOut,
    SeverityName,
)
from hub.api.visibility import Visibility
from hub.durations import parse_instant_ms
from hub.indicators.periods import LATEST_MS
from hub.ports import (
    DeviceFigure,
    IndicatorGrouping,
    IndicatorInfo,
    IndicatorPoint,
    IndicatorPort,
    IndicatorQuery,
    NotFound,
)

router = APIRouter(tags=["indicators"], route_class=ApiRoute)

IndicatorId = Annotated[str, Path(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
PeriodQ = Annotated[
    Literal["day", "week", "month"], Query(description="local day, ISO week or month")
]
TimeQ = Annotated[
    str | None,
    Query(
        pattern=INSTANT_PATTERN,
        description="epoch ms, RFC 3339 with offset, `now` or a relative time like `-30d`",
    ),
]
DistrictQ = Annotated[str | None, Query(pattern=DISTRICT_PATTERN)]
FormatQ = Annotated[Literal["json", "csv"] | None, Query(alias="format")]
#: Default range when ``start`` is not given: this far back from ``end``.
DEFAULT_SPAN_MS = {"day": 30 * 86_400_000, "week": 84 * 86_400_000, "month": 366 * 86_400_000}
MAX_DEVICES = 10_000
CSV_MEDIA = "text/csv; charset=utf-8"
CSV_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {
        "content": {"text/csv": {}},
        "description": "The same as CSV (format=csv or Accept: text/csv)",
    }
}


def _port(ctx: ApiContext) -> IndicatorPort:
    if ctx.indicators is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "indicators are not available here")
    return ctx.indicators


def _out(i: IndicatorInfo) -> IndicatorOut:
    return IndicatorOut(
        id=i.id,
        title=i.title,
        unit=i.unit,
        description=i.description,
        formula=i.formula,
        source=i.source,
        direction=i.direction,
        target=i.target,
        reference=i.reference,
        headline=i.headline,
        version=i.version,
        measure=dict(i.measure),
        ratio=i.ratio,
        per_device=i.per_device,
    )


def _metrics_of(info: IndicatorInfo) -> list[tuple[str, str]]:
    """(asset type, metric) pairs whose values an indicator is computed from."""
    m = info.measure
    asset = m.get("asset_type")
    if not isinstance(asset, str):
        return []
    names = [m.get("metric")]
    for part in ("ok", "when"):
        cond = m.get(part)
        if isinstance(cond, dict):
            names.append(cond.get("metric"))
    return [(asset, n) for n in names if isinstance(n, str)]


def _check_values(ctx: ApiContext, who: Principal, info: IndicatorInfo) -> None:
    """An indicator computed from a metric the key may not read is refused (403), as the
    metric's values are (hub.api.visibility)."""
    visible = Visibility(ctx.catalog, who)
    hidden = [f"{a}.{m}" for a, m in _metrics_of(info) if not visible.may_read(a, m)]
    if hidden:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"indicator {info.id!r} is computed from {', '.join(hidden)}, whose values this"
            f" key's role ({who.role}) may not read",
        )


def _range(period: str, start: str | None, end: str | None, now_ms: int) -> tuple[int, int]:
    try:
        end_ms = parse_instant_ms(end, now_ms) if end is not None else now_ms
        start_ms = (
            parse_instant_ms(start, now_ms)
            if start is not None
            else end_ms - DEFAULT_SPAN_MS[period]
        )
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    if start_ms < 0 or end_ms > LATEST_MS:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, "start and end must be between 1970 and 2200"
        )
    if end_ms <= start_ms:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "end must be after start")
    return start_ms, end_ms


def _check_scope(who: Principal, district: str | None, asset_type: str | None) -> None:
    scope = who.scope
    if district is not None and scope.districts is not None and district not in scope.districts:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, f"district {district!r} is outside this key's scope"
        )
    if (
        asset_type is not None
        and scope.asset_types is not None
        and asset_type not in scope.asset_types
    ):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, f"asset type {asset_type!r} is outside this key's scope"
        )


def _wants_csv(request: Request, fmt: str | None) -> bool:
    if fmt is not None:
        return fmt == "csv"
    accept = request.headers.get("accept", "")
    return "text/csv" in accept and "application/json" not in accept


def _csv(header: Sequence[str], rows: Iterable[Sequence[object]], filename: str) -> Response:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(["" if v is None else v for v in row] for row in rows)
    return Response(
        buf.getvalue(),
        media_type=CSV_MEDIA,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.get("/indicators", response_model=list[IndicatorOut], responses=errors(404))
async def list_indicators(request: Request, ctx: Ctx, who: Viewer) -> list[IndicatorOut]:
    """Every indicator definition: what it measures, its formula, unit, direction, target."""
    out = [_out(i) for i in _port(ctx).definitions()]
    set_rows(request, len(out))
    return out


@router.get(
    "/indicators/{indicator_id}",
    response_model=IndicatorSeriesOut,
    responses={**CSV_RESPONSES, **errors(404)},
)
async def indicator_series(
    request: Request,
    ctx: Ctx,
    who: Viewer,
    indicator_id: IndicatorId,
    period: PeriodQ = "day",
    start: TimeQ = None,
    end: TimeQ = None,
    district: DistrictQ = None,
    asset_type: DistrictQ = None,
    by: Annotated[
        IndicatorGrouping,
        Query(description="one point per district (default), asset type, both, or city"),
    ] = "district",
    severity: Annotated[
        SeverityName | None, Query(description="response indicators: one severity")
    ] = None,
    rule_id: Annotated[
        str | None, Query(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")
    ] = None,
    fmt: FormatQ = None,
) -> Response:
    """Values per period (local day, ISO week or month of the city's time zone) and
    district (``by``), with numerator and denominator where the value is a ratio.
    ``format=csv`` or ``Accept: text/csv`` gives the same as CSV."""
    port = _port(ctx)
    _check_scope(who, district, asset_type)
    start_ms, end_ms = _range(period, start, end, ctx.clock.now_ms())
    query = IndicatorQuery(
        indicator_id, period, start_ms, end_ms, district, asset_type, by, severity, rule_id
    )
    definition = port.definition(indicator_id)
    if definition is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no indicator {indicator_id!r}")
    _check_values(ctx, who, definition)
    try:
        points = port.series(query, who.scope)
    except NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    set_rows(request, len(points))
    set_district(request, district)
    if _wants_csv(request, fmt):
        return _csv(
            (
                "id",
                "unit",
                "period_start_ms",
                "district",
                "asset_type",
                "value",
                "numerator",
                "denominator",
            ),
            (
                (
                    indicator_id,
                    definition.unit,
                    p.period_start_ms,
                    p.district,
                    p.asset_type,
                    p.value,
                    p.numerator,
                    p.denominator,
                )
                for p in points
            ),
            f"{indicator_id}.csv",
        )
    return json_response(
        {"id": indicator_id, "unit": definition.unit, "points": [_point(p) for p in points]}
    )


def _point(p: IndicatorPoint) -> dict[str, object]:
    return {
        "period_start_ms": p.period_start_ms,
        "district": p.district,
        "asset_type": p.asset_type,
        "value": p.value,
        "numerator": p.numerator,
        "denominator": p.denominator,
    }


def _device(f: DeviceFigure) -> dict[str, object]:
    return {
        "device_id": f.device_id,
        "district": f.district,
        "asset_type": f.asset_type,
        "value": f.value,
        "numerator": f.numerator,
        "denominator": f.denominator,
    }


@router.get(
    "/indicators/{indicator_id}/devices",
    response_model=IndicatorDevicesOut,
    responses={**CSV_RESPONSES, **errors(404)},
)
async def indicator_devices(
    request: Request,
    ctx: Ctx,
    who: Viewer,
    indicator_id: IndicatorId,
    period: PeriodQ = "day",
    start: TimeQ = None,
    end: TimeQ = None,
    district: DistrictQ = None,
    asset_type: DistrictQ = None,
    limit: Annotated[int, Query(ge=1, le=MAX_DEVICES)] = 50,
    fmt: FormatQ = None,
) -> Response:
    """Each device's value over the whole range (whole periods), worst first: the
    devices that pull a district down (indicators with a value per device only)."""
    port = _port(ctx)
    _check_scope(who, district, asset_type)
    start_ms, end_ms = _range(period, start, end, ctx.clock.now_ms())
    definition = port.definition(indicator_id)
    if definition is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no indicator {indicator_id!r}")
    _check_values(ctx, who, definition)
    query = IndicatorQuery(indicator_id, period, start_ms, end_ms, district, asset_type)
    try:
        figures = port.devices(query, who.scope, limit)
    except NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    set_rows(request, len(figures))
    set_district(request, district)
    if _wants_csv(request, fmt):
        return _csv(
            (
                "id",
                "unit",
                "device_id",
                "district",
                "asset_type",
                "value",
                "numerator",
                "denominator",
            ),
            (
                (
                    indicator_id,
                    definition.unit,
                    f.device_id,
                    f.district,
                    f.asset_type,
                    f.value,
                    f.numerator,
                    f.denominator,
                )
                for f in figures
            ),
            f"{indicator_id}-devices.csv",
        )
    return json_response(
        {
            "id": indicator_id,
            "unit": definition.unit,
            "start_ms": start_ms,
            "end_ms": end_ms,
            "devices": [_device(f) for f in figures],
        }
    )
