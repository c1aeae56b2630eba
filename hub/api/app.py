"""The FastAPI application: routers per resource under ``/api/v1``, ``/metrics``, and the
operations console (docs/console.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, Response
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from hub.api import audit, keys
from hub.api.auth import Lockout, Principal
from hub.api.context import ApiContext
from hub.api.deps import authenticate, errors, require
from hub.api.errors import install_handlers
from hub.api.middleware import GuardMiddleware
from hub.api.routes import (
    access,
    alerts,
    audit_report,
    console,
    dead_letters,
    devices,
    districts,
    health,
    indicators,
    open311,
    open_data,
    reports,
    rules,
    silences,
    stream,
    telemetry,
)
from hub.api.routing import ApiRoute
from hub.opendata import bulk, sta
from hub.opendata.middleware import OpenDataMiddleware

STATIC_DIR = Path(__file__).parent / "static"
API_PREFIX = "/api/v1"


def create_app(ctx: ApiContext) -> FastAPI:
    """The API and console over the ports in ``ctx`` (keys and audit tables are created)."""
    keys.ensure_schema(ctx.conn)
    audit.ensure_schema(ctx.conn)
    app = FastAPI(
        title="City infrastructure hub",
        version="1",
        description=(
            "Operator API of the hub (CONTRACT §6). Every endpoint but /api/v1/health and the "
            "open data (/open/v1 here, and the SensorThings API at /sta/v1.1, which its own "
            "standard describes) needs `Authorization: Bearer <key>`; roles viewer < operator "
            "< rule_author < admin, optionally scoped to districts and asset types."
        ),
        docs_url=None,  # Swagger UI would load scripts from a CDN; the schema is at /openapi.json
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.ctx = ctx
    app.state.lockout = Lockout()
    app.state.touched = {}
    install_handlers(app)

    for module in (
        health,
        devices,
        telemetry,
        districts,
        alerts,
        silences,
        rules,
        reports,
        dead_letters,
        stream,
        access,
        console,
        audit_report,
        indicators,
        open_data,
    ):
        # straight onto the app: FastAPI rebuilds every route on each include_router
        app.include_router(_documented(module.router), prefix=API_PREFIX)
    app.include_router(_documented(_metrics_router(public=ctx.settings.api.metrics_public)))
    # Open311 GeoReport v2, public: documented by the specification (docs/reports.md).
    app.state.open311_limits = open311.Limits(
        ctx.settings.reports.post_per_minute, ctx.settings.reports.read_per_minute
    )
    app.include_router(open311.router)
    if ctx.opendata is not None:
        # The public tier (docs/open-data.md): no key, its own rate limit and headers.
        app.state.opendata = ctx.opendata
        app.include_router(_documented(bulk.router))
        app.include_router(sta.router)
    _catalog_in_schema(app, ctx.catalog.asset_types())

    @app.get("/", include_in_schema=False)
    async def console_page() -> FileResponse:
        """The operations console's single page."""
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    if ctx.settings.api.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(ctx.settings.api.cors_origins),
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )
    if ctx.opendata is not None:
        # Outside the operator CORS policy (public data is for any page), inside the guard.
        app.add_middleware(
            OpenDataMiddleware,
            service=ctx.opendata,
            trusted_proxies=ctx.settings.api.trusted_proxies,
        )
    app.add_middleware(GuardMiddleware, ctx=ctx)  # added last: outermost
    return app


def _metrics_router(*, public: bool) -> APIRouter:
    router = APIRouter(route_class=ApiRoute, tags=["metrics"])
    responses: dict[int | str, dict[str, Any]] = {
        200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text"}
    }
    if public:

        @router.get("/metrics", response_class=Response, responses=responses)
        async def metrics() -> Response:
            """Prometheus metrics of the hub (public: ``HUB_API__METRICS_PUBLIC=true``)."""
            return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    else:

        @router.get("/metrics", response_class=Response, responses=responses)
        async def admin_metrics(
            _who: Annotated[Principal, Depends(require("admin"))],
        ) -> Response:
            """Prometheus metrics of the hub (admins only: metrics_public is false)."""
            return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router


def _documented(router: APIRouter) -> APIRouter:
    """``router`` with the error statuses each route can answer documented, from what the
    route declares (before it is included: inclusion copies the routes' responses).

    Every route answers 422 to an undeclared query parameter; one that needs a key
    answers 401, 403 and 429; one with a body 413. Statuses that depend on what the
    route does (404, 409, 503) are declared on the route itself.
    """
    for route in router.routes:
        if not isinstance(route, APIRoute):
            continue
        codes = [422]
        if _needs_key(route.dependant):
            codes += [401, 403, 429]
        if route.body_field is not None:
            codes.append(413)
        route.responses = {**errors(*codes), **route.responses}
    return router


def _needs_key(dependant: Dependant) -> bool:
    return dependant.call is authenticate or any(_needs_key(d) for d in dependant.dependencies)


def _catalog_in_schema(app: FastAPI, asset_types: list[str]) -> None:
    """Name the catalog's asset types as the only ones provisioning accepts, in the schema.

    The catalog is data loaded at start-up, so the models cannot list it; the schema
    then says what the server checks (``POST``/``PUT /devices`` answer 422 otherwise).
    """
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            for model in ("DeviceCreate", "DeviceUpdate"):
                props = schema["components"]["schemas"][model]["properties"]
                if asset_types:
                    props["asset_type"]["enum"] = list(asset_types)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
