"""``GET /api/v1/open-data/policy`` and ``/open-data/releases``: what the public tier
publishes, and the release log (what was published, when, under which policy version)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request, status

from hub.api.deps import Ctx, Operator, Viewer, errors, set_rows
from hub.api.routing import ApiRoute
from hub.api.schemas import OpenDataPolicyOut, ReleaseOut
from hub.opendata.service import OpenData

router = APIRouter(tags=["open data"], route_class=ApiRoute)

_OFF = errors(503)


def _service(ctx: Ctx) -> OpenData:
    if ctx.opendata is None:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "open data is off on this hub (HUB_OPEN_DATA__ENABLED=false)",
            headers={"Retry-After": "3600"},
        )
    return ctx.opendata


@router.get("/open-data/policy", response_model=OpenDataPolicyOut, responses=_OFF)
async def policy(request: Request, ctx: Ctx, _who: Viewer) -> OpenDataPolicyOut:
    """The policy in effect: its version, and per asset type the published metrics with
    their tier (public, public_aggregate), k, bucket and delay, and the location precision."""
    service = _service(ctx)
    described = service.policy.describe()
    set_rows(request, len(described))
    return OpenDataPolicyOut(version=service.policy.version, asset_types=described)


@router.get("/open-data/releases", response_model=list[ReleaseOut], responses=_OFF)
async def releases(
    request: Request,
    ctx: Ctx,
    _who: Operator,
    kind: Literal["policy", "aggregates", "daily"] | None = None,
    since_ms: Annotated[int | None, Query(ge=0, le=10**14)] = None,
    until_ms: Annotated[int | None, Query(ge=0, le=10**14)] = None,
    before_id: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[ReleaseOut]:
    """The release log, newest first: what was published (dataset, period, rows, cells
    suppressed under k), when, under which policy version, and the SHA-256 of the rows.
    Page with ``before_id``."""
    service = _service(ctx)
    found = await service.releases(
        since_ms=since_ms, until_ms=until_ms, kind=kind, before_id=before_id, limit=limit
    )
    set_rows(request, len(found))
    return [ReleaseOut(**asdict(r)) for r in found]
