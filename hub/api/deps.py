"""Dependencies shared by the routers, declared once as ``Annotated`` aliases."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import orjson
from fastapi import Depends, HTTPException, Request, Response, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from hub.api.auth import TOUCH_INTERVAL_MS, FailedAuthLimiter, Principal
from hub.api.context import ApiContext
from hub.api.keys import touch_key, verify_key

_bearer = HTTPBearer(
    auto_error=False,
    description="An API key from `hub keys create`: `Authorization: Bearer hub_<id>_<secret>`",
)


def get_ctx(request: Request) -> ApiContext:
    """The context the app was created with."""
    ctx: ApiContext = request.app.state.ctx
    return ctx


Ctx = Annotated[ApiContext, Depends(get_ctx)]


def client_address(request: Request) -> str:
    """The caller's address as the server saw it (rate limiting and audit key on it)."""
    return request.client.host if request.client else "unknown"


async def authenticate(
    request: Request,
    ctx: Ctx,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller behind the bearer key; 401 without a valid key, 429 after too many failures."""
    limiter: FailedAuthLimiter = request.app.state.limiter
    client = client_address(request)
    now = ctx.clock.monotonic()
    wait = limiter.retry_after(client, now)
    if wait is not None:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            "too many failed authentications from this address; try again later",
            headers={"Retry-After": str(wait)},
        )
    if credentials is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "an API key is needed: Authorization: Bearer <key>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    key = verify_key(ctx.conn, credentials.credentials)
    if key is None:
        limiter.failed(client, now)
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "invalid or revoked API key",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    principal = Principal(key)
    request.state.principal = principal
    touched: dict[str, int] = request.app.state.touched
    now_ms = ctx.clock.now_ms()
    if now_ms - touched.get(key.id, 0) >= TOUCH_INTERVAL_MS:
        touched[key.id] = now_ms
        touch_key(ctx.conn, key.id, now_ms)
    return principal


def require(role: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency admitting keys of ``role`` or above (403 otherwise)."""

    async def check(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
        if not principal.has_role(role):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"this needs the {role} role or above; the key has {principal.role}",
            )
        return principal

    check.__name__ = f"require_{role}"
    return check


Viewer = Annotated[Principal, Depends(require("viewer"))]
Operator = Annotated[Principal, Depends(require("operator"))]
RuleAuthor = Annotated[Principal, Depends(require("rule_author"))]
Admin = Annotated[Principal, Depends(require("admin"))]


def set_rows(request: Request, rows: int) -> None:
    """Tell the audit log how many rows this request returned or changed."""
    request.state.audit_rows = rows


def set_district(request: Request, district: str | None) -> None:
    """Tell the audit log which district this request was about (None: city-wide)."""
    if district is not None:
        request.state.audit_district = district


def json_response(content: Any) -> Response:
    """A 200 JSON response of plain dicts/lists already shaped like the route's response model.

    For the large, hot lists (devices, alerts, board, telemetry points): FastAPI would
    otherwise validate every row against the model again and serialise it through
    pydantic, which costs more than building the rows. The route keeps its
    ``response_model`` so the OpenAPI schema (and schemathesis) still hold it to it.
    """
    return Response(orjson.dumps(content), media_type="application/json")
