"""``GET /api/v1/devices/{device_id}/telemetry``: raw or aggregated readings of one device."""

from __future__ import annotations

import math
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response, status
from pydantic import Field

from hub.api.deps import Ctx, Viewer, errors, json_response, set_rows
from hub.api.routes.devices import device_in_scope
from hub.api.routing import ApiRoute
from hub.api.schemas import DEVICE_ID_PATTERN, TelemetryOut
from hub.api.visibility import Visibility
from hub.durations import parse_duration_ms, parse_instant_ms
from hub.messages import METRIC_RE
from hub.store.base import Aggregate, TelemetryQuery

router = APIRouter(tags=["telemetry"], route_class=ApiRoute)

#: Most points one request returns: a chart needs a few thousand, a scraper should page.
MAX_POINTS = 10_000
#: Longest time range one request may cover.
MAX_RANGE_MS = 366 * 86_400_000
#: Default range when ``start`` is not given.
DEFAULT_RANGE_MS = 3_600_000
#: Smallest bucket for aggregation.
MIN_EVERY_MS = 1000
MAX_METRICS = 20

#: The parameters' grammars, in the OpenAPI schema too: the subset of hub.durations'
#: grammar the API takes (whole numbers, no spaces), so the server accepts exactly these.
_DURATION = "([0-9]{1,9}(ms|s|m|h|d))+"
EVERY_PATTERN = f"^{_DURATION}$"
INSTANT_PATTERN = (
    rf"^(now|-{_DURATION}|[0-9]{{1,15}}"
    r"|[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|[+-][0-9]{2}:[0-9]{2}))$"
)
_NAME = METRIC_RE.pattern
METRICS_PATTERN = f"^{_NAME}(,{_NAME})*$"


def _unprocessable(message: str) -> HTTPException:
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, message)


@router.get(
    "/devices/{device_id}/telemetry", response_model=TelemetryOut, responses=errors(404, 503)
)
async def telemetry(
    request: Request,
    ctx: Ctx,
    who: Viewer,
    device_id: Annotated[str, Path(pattern=DEVICE_ID_PATTERN)],
    metric: Annotated[
        list[Annotated[str, Field(pattern=METRICS_PATTERN, max_length=1300)]] | None,
        Query(
            max_length=MAX_METRICS,
            description="metric name; repeat or comma-separate for several (default: all)",
        ),
    ] = None,
    start: Annotated[
        str | None,
        Query(
            pattern=INSTANT_PATTERN,
            description="epoch ms, RFC 3339 with offset, or relative like -6h",
        ),
    ] = None,
    end: Annotated[
        str | None, Query(pattern=INSTANT_PATTERN, description="as start; default now")
    ] = None,
    every: Annotated[
        str | None, Query(pattern=EVERY_PATTERN, description="bucket size: 30s, 5m, 1h, 1d")
    ] = None,
    agg: Aggregate | None = None,
) -> Response:
    """Readings of one device in ``[start, end)``, raw or bucketed by ``every`` with ``agg``."""
    device = device_in_scope(ctx, who, device_id)
    now = ctx.clock.now_ms()
    metrics = _metrics(metric)
    try:
        end_ms = parse_instant_ms(end, now) if end else now
        start_ms = parse_instant_ms(start, now) if start else end_ms - DEFAULT_RANGE_MS
        every_ms = parse_duration_ms(every) if every else None
    except ValueError as exc:
        raise _unprocessable(str(exc)) from None
    if end_ms <= start_ms:
        raise _unprocessable("end must be after start")
    if every_ms is not None and every_ms < MIN_EVERY_MS:
        raise _unprocessable("every must be at least 1s")
    if agg is not None and every_ms is None:
        raise _unprocessable("agg needs every (the bucket size)")
    if every_ms is not None and agg is None:
        agg = "mean"
    if end_ms - start_ms > MAX_RANGE_MS:
        raise _unprocessable(
            f"time range longer than {MAX_RANGE_MS // 86_400_000} days; narrow start/end"
        )
    visible = Visibility(ctx.catalog, who)
    for name in metrics or ():
        if not visible.may_read(device.asset_type, name):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"metric {name!r} is restricted; this key may not read it",
            )
    if every_ms is not None:
        series = len(metrics) if metrics else max(1, len(device.latest))
        expected = math.ceil((end_ms - start_ms) / every_ms) * series
        if expected > MAX_POINTS:
            raise _unprocessable(
                f"about {expected} points requested, more than {MAX_POINTS}; "
                "use a larger every or a shorter range",
            )
    query = TelemetryQuery(
        asset_type=device.asset_type,
        device_id=device.device_id,
        start_ms=start_ms,
        end_ms=end_ms,
        metrics=metrics,
        every_ms=every_ms,
        agg=agg,
        limit=MAX_POINTS + 1,
    )
    points = await ctx.store.query(query)
    if len(points) > MAX_POINTS:
        raise _unprocessable(
            f"more than {MAX_POINTS} points in range; narrow start/end or aggregate "
            "with every= and agg=",
        )
    readable: dict[str, bool] = {}
    out: list[dict[str, Any]] = []  # TelemetryPoint fields; up to MAX_POINTS, built as plain JSON
    for point in points:
        allowed = readable.get(point.metric)
        if allowed is None:
            allowed = readable[point.metric] = visible.may_read(device.asset_type, point.metric)
        if allowed:
            value = None if point.value is None else float(point.value)
            if value is not None and not math.isfinite(value):
                value = None  # JSON has no NaN or infinity
            out.append({"ts_ms": int(point.ts_ms), "metric": point.metric, "value": value})
    set_rows(request, len(out))
    return json_response(
        {
            "device_id": device.device_id,
            "asset_type": device.asset_type,
            "start_ms": start_ms,
            "end_ms": end_ms,
            "every_ms": every_ms,
            "agg": agg,
            "metrics": metrics,
            "points": out,
            "withheld_metrics": sorted(m for m, ok in readable.items() if not ok),
        }
    )


def _metrics(raw: list[str] | None) -> list[str] | None:
    """The metric names asked for (each item already matches METRICS_PATTERN)."""
    if not raw:
        return None
    names = sorted({name for item in raw for name in item.split(",")})
    if len(names) > MAX_METRICS:
        raise _unprocessable(f"at most {MAX_METRICS} metrics per request")
    return names
