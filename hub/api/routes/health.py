"""``GET /api/v1/health`` (no key needed) and ``GET /api/v1/whoami``."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse

from hub.api.deps import Ctx, Viewer, set_rows
from hub.api.routing import ApiRoute
from hub.api.schemas import HealthOut, WhoAmI

router = APIRouter(tags=["health"], route_class=ApiRoute)


@router.get(
    "/health",
    response_model=HealthOut,
    responses={503: {"model": HealthOut, "description": "The hub is not ready"}},
)
async def health(ctx: Ctx) -> JSONResponse:
    """Liveness and readiness of the hub's stages; 503 while not ready."""
    report = await ctx.health.health()
    body = HealthOut(ok=report.ok, ready=report.ready, checks=jsonable_encoder(report.checks))
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if report.ready else 503)


@router.get("/whoami", response_model=WhoAmI)
async def whoami(request: Request, who: Viewer) -> WhoAmI:
    """The key making the request: its id, name, role and scope (the dashboard shows it)."""
    set_rows(request, 1)
    return WhoAmI(id=who.id, name=who.name, role=who.role, scopes=who.key.scopes_dict())
