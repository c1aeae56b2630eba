"""``GET /api/v1/audit``: the audit log, and ``GET /api/v1/keys``: the keys, for admins."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request, status

from hub.api.audit import entries
from hub.api.deps import Admin, Ctx, set_rows
from hub.api.keys import list_keys
from hub.api.routing import ApiRoute
from hub.api.schemas import AuditOut, KeyOut

router = APIRouter(tags=["audit"], route_class=ApiRoute)


@router.get("/audit", response_model=list[AuditOut])
async def audit_log(
    request: Request,
    ctx: Ctx,
    who: Admin,
    key_id: Annotated[str | None, Query(pattern=r"^[0-9a-f]{8}$")] = None,
    since_ms: Annotated[int | None, Query(ge=0, le=10**14)] = None,
    before_id: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AuditOut]:
    """Audited requests newest first: who (key), what (method, path, query), when, status, rows.

    City-wide keys only: the log names every district's devices and alerts.
    """
    if who.scoped:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "the audit log covers the whole city; a key scoped to districts or asset types "
            "may not read it",
        )
    rows = entries(ctx.conn, limit=limit, key_id=key_id, since_ms=since_ms, before_id=before_id)
    set_rows(request, len(rows))
    return [AuditOut(**asdict(r)) for r in rows]


@router.get("/keys", response_model=list[KeyOut])
async def keys(
    request: Request,
    ctx: Ctx,
    who: Admin,
    state: Literal["active", "expired", "revoked"] | None = None,
) -> list[KeyOut]:
    """Every API key, oldest first: role, scope, state, created, last used, expiry and
    purpose; never a secret. City-wide admin keys only (the list names every key)."""
    if who.scoped:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "the key list covers the whole city; a key scoped to districts or asset types "
            "may not read it",
        )
    now_ms = ctx.clock.now_ms()
    out = [
        KeyOut(
            id=k.id,
            name=k.name,
            role=k.role,
            scopes=k.scopes_dict(),
            state=k.state(now_ms),
            created_ms=k.created_ms,
            last_used_ms=k.last_used_ms,
            expires_ms=k.expires_ms,
            revoked_ms=k.revoked_ms,
            purpose=k.purpose,
        )
        for k in list_keys(ctx.conn)
        if state is None or k.state(now_ms) == state
    ]
    set_rows(request, len(out))
    return out
