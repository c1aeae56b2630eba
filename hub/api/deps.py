"""Dependencies shared by the routers, declared once as ``Annotated`` aliases."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import orjson
from fastapi import Depends, HTTPException, Request, Response, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from hub.api.auth import TOUCH_INTERVAL_MS, Lockout, Principal, client_address
from hub.api.context import ApiContext
from hub.api.keys import presented_key_id, touch_key, verify_key
from hub.api.schemas import ErrorOut

_bearer = HTTPBearer(
    auto_error=False,
    description="An API key from `hub keys create`: `Authorization: Bearer hub_<id>_<secret>`",
)


def get_ctx(request: Request) -> ApiContext:
    """The context the app was created with."""
    ctx: ApiContext = request.app.state.ctx
    return ctx


Ctx = Annotated[ApiContext, Depends(get_ctx)]

#: What each error status means, for the OpenAPI schema.
ERROR_TEXT: dict[int, str] = {
    400: "Malformed request",
    401: "No valid API key",
    403: "Outside the key's role or scope",
    404: "Not found",
    409: "Conflicts with the current state",
    413: "Request body too large",
    422: "Invalid parameters or body; `detail` says which",
    429: "Too many failed authentications",
    503: "A part of the hub this needs is unavailable; retry after `Retry-After` seconds",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the error statuses ``codes`` (each a ``{"detail": …}`` body)."""
    return {code: {"model": ErrorOut, "description": ERROR_TEXT[code]} for code in codes}


def caller_address(request: Request) -> str:
    """The caller's address (behind trusted proxies, the one they name); lockout and audit
    key on it."""
    return client_address(request.scope, get_ctx(request).settings.api.trusted_proxies)


async def authenticate(
    request: Request,
    ctx: Ctx,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller behind the bearer key; 401 without a valid key, 429 while locked out.

    Failures count per key id and per client address (hub.api.auth): a key id being
    guessed is locked everywhere, an address that keeps failing gets 429 for its
    failures, and a valid key is never refused because of its address.
    """
    if credentials is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "an API key is needed: Authorization: Bearer <key>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    lockout: Lockout = request.app.state.lockout
    now = ctx.clock.monotonic()
    key_id = presented_key_id(credentials.credentials)
    if key_id is not None and (wait := lockout.by_key.retry_after(key_id, now)) is not None:
        raise _too_many(f"too many failed authentications with key id {key_id}", wait)
    key = verify_key(ctx.conn, credentials.credentials, now_ms=ctx.clock.now_ms())
    if key is None:
        address = caller_address(request)
        wait = lockout.by_address.retry_after(address, now)
        lockout.by_address.failed(address, now)
        if key_id is not None:
            lockout.by_key.failed(key_id, now)
        if wait is not None:
            raise _too_many("too many failed authentications from this address", wait)
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "invalid, expired or revoked API key",
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


def _too_many(what: str, wait: int) -> HTTPException:
    return HTTPException(
        status.HTTP_429_TOO_MANY_REQUESTS,
        f"{what}; try again in {wait} s",
        headers={"Retry-After": str(wait)},
    )


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
