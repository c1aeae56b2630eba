"""``GET /api/v1/audit/report``: who read or changed what, per key, resource kind,
district and period (JSON or CSV), for admins with a city-wide key."""

from __future__ import annotations

import csv
import io
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request, Response, status

from hub.api.audit import report
from hub.api.deps import Admin, Ctx, json_response, set_rows
from hub.api.routes.telemetry import INSTANT_PATTERN
from hub.api.routing import ApiRoute
from hub.api.schemas import DISTRICT_PATTERN, AuditReportOut
from hub.durations import parse_instant_ms
from hub.indicators.periods import LATEST_MS, CityCalendar

router = APIRouter(tags=["audit"], route_class=ApiRoute)

#: Most periods one report covers.
MAX_PERIODS = 400
DEFAULT_SPAN_MS = {"day": 30 * 86_400_000, "week": 84 * 86_400_000, "month": 366 * 86_400_000}
TimeQ = Annotated[
    str | None,
    Query(
        pattern=INSTANT_PATTERN, description="epoch ms, RFC 3339 with offset, `now` or like `-30d`"
    ),
]


@router.get(
    "/audit/report",
    response_model=AuditReportOut,
    responses={200: {"content": {"text/csv": {}}, "description": "The same as CSV (format=csv)"}},
)
async def audit_report(
    request: Request,
    ctx: Ctx,
    who: Admin,
    period: Literal["day", "week", "month"] = "day",
    start: TimeQ = None,
    end: TimeQ = None,
    key_id: Annotated[str | None, Query(pattern=r"^[0-9a-f]{8}$")] = None,
    district: Annotated[str | None, Query(pattern=DISTRICT_PATTERN)] = None,
    resource: Annotated[str | None, Query(pattern=r"^[a-z][a-z0-9_.:-]{0,63}$")] = None,
    fmt: Annotated[Literal["json", "csv"] | None, Query(alias="format")] = None,
) -> Response:
    """Requests per period (local day, ISO week or month), key (with its purpose and
    expiry), resource kind (devices, telemetry, alerts, rules, indicators…), district and
    action (``read`` or ``change``), with the rows they returned or changed and how many
    were refused; and what open data published (action ``publish``, resource
    ``open_data:<dataset>``, from the release log, with the cells suppressed under k).

    City-wide keys only: the report names every district's readers.
    """
    if who.scoped:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "the audit report covers the whole city; a key scoped to districts or asset types"
            " may not read it",
        )
    now = ctx.clock.now_ms()
    try:
        end_ms = parse_instant_ms(end, now) if end is not None else now
        start_ms = (
            parse_instant_ms(start, now) if start is not None else end_ms - DEFAULT_SPAN_MS[period]
        )
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    if start_ms < 0 or end_ms > LATEST_MS:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, "start and end must be between 1970 and 2200"
        )
    if end_ms <= start_ms:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "end must be after start")
    calendar = CityCalendar(ctx.settings.indicators.timezone)
    periods = calendar.periods(period, start_ms, end_ms)
    if len(periods) > MAX_PERIODS:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"{len(periods)} periods asked; at most {MAX_PERIODS}"
            " (a longer period or a shorter range)",
        )
    rows = report(ctx.conn, periods, key_id=key_id, district=district, resource=resource)
    set_rows(request, len(rows))
    fields = (
        "period_start_ms",
        "key_id",
        "key_name",
        "role",
        "resource",
        "district",
        "action",
        "requests",
        "rows",
        "refused",
        "key_purpose",
        "key_expires_ms",
        "suppressed",
    )
    if fmt == "csv" or (fmt is None and "text/csv" in request.headers.get("accept", "")):
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(fields)
        for r in rows:
            writer.writerow(["" if getattr(r, f) is None else getattr(r, f) for f in fields])
        return Response(
            buf.getvalue(),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="audit-report.csv"'},
        )
    return json_response(
        {
            "period": period,
            "start_ms": periods[0][0] if periods else start_ms,
            "end_ms": periods[-1][1] if periods else end_ms,
            "rows": [{f: getattr(r, f) for f in fields} for r in rows],
        }
    )
