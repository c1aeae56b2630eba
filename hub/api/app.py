"""The FastAPI application: routers per resource under ``/api/v1``, ``/metrics``, dashboard."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from hub.api import audit, keys
from hub.api.auth import FailedAuthLimiter, Principal
from hub.api.context import ApiContext
from hub.api.deps import require
from hub.api.errors import install_handlers
from hub.api.middleware import GuardMiddleware
from hub.api.routes import (
    access,
    alerts,
    audit_report,
    dead_letters,
    devices,
    districts,
    health,
    indicators,
    rules,
    silences,
    stream,
    telemetry,
)
from hub.api.schemas import ErrorOut

STATIC_DIR = Path(__file__).parent / "static"
#: Error statuses any API endpoint may answer, documented once for the OpenAPI schema.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut, "description": text}
    for code, text in (
        (400, "Malformed request"),
        (401, "No valid API key"),
        (403, "Outside the key's role or scope"),
        (404, "Not found"),
        (409, "Conflicts with the current state"),
        (413, "Request body too large"),
        (422, "Invalid parameters or body; `detail` says which"),
        (429, "Too many failed authentications"),
    )
}
API_PREFIX = "/api/v1"


def create_app(ctx: ApiContext) -> FastAPI:
    """The API and dashboard over the ports in ``ctx`` (keys and audit tables are created)."""
    keys.ensure_schema(ctx.conn)
    audit.ensure_schema(ctx.conn)
    app = FastAPI(
        title="City infrastructure hub",
        version="1",
        description=(
            "Operator API of the hub (CONTRACT §6). Every endpoint but /api/v1/health needs "
            "`Authorization: Bearer <key>`; roles viewer < operator < rule_author < admin, "
            "optionally scoped to districts and asset types."
        ),
        docs_url=None,  # Swagger UI would load scripts from a CDN; the schema is at /openapi.json
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.ctx = ctx
    app.state.limiter = FailedAuthLimiter()
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
        dead_letters,
        stream,
        access,
        audit_report,
        indicators,
    ):
        # straight onto the app: FastAPI rebuilds every route on each include_router
        app.include_router(module.router, prefix=API_PREFIX, responses=ERROR_RESPONSES)
    _metrics_route(app, public=ctx.settings.api.metrics_public)

    @app.get("/", include_in_schema=False)
    async def dashboard() -> FileResponse:
        """The dashboard's single page."""
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    if ctx.settings.api.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(ctx.settings.api.cors_origins),
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(GuardMiddleware, ctx=ctx)  # added last: outermost
    return app


def _metrics_route(app: FastAPI, *, public: bool) -> None:
    responses: dict[int | str, dict[str, Any]] = {
        200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text"}
    }
    if public:

        @app.get("/metrics", tags=["metrics"], response_class=Response, responses=responses)
        async def metrics() -> Response:
            """Prometheus metrics of the hub (public: ``HUB_API__METRICS_PUBLIC=true``)."""
            return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    else:

        @app.get("/metrics", tags=["metrics"], response_class=Response, responses=responses)
        async def admin_metrics(
            _who: Annotated[Principal, Depends(require("admin"))],
        ) -> Response:
            """Prometheus metrics of the hub (admins only: metrics_public is false)."""
            return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
